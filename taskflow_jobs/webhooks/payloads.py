"""What each route accepts, as pydantic models, and what a Supabase change means for us.

Errors name the field (`record.assignee_id: Input should be a valid UUID`) and never echo
the input back, since bodies may carry personal data.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.datastructures import Headers

from taskflow_jobs.email.messages import TRANSACTIONAL_ONLY, Email, InvalidMessage, parse_message
from taskflow_jobs.webhooks.errors import ApiError

EVENT_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$")
EVENT_NAME_MAX = 64
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")
# Where senders put a delivery id that stays the same across their retries, in order of preference.
DELIVERY_ID_HEADERS = ("idempotency-key", "webhook-id", "x-delivery-id")


def describe(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{prefix}.{loc}" if prefix and loc else prefix or loc or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate(model: type[BaseModel], value: Any, prefix: str = "") -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ApiError(422, "invalid payload", describe(exc, prefix)) from None


# --- POST /webhooks/supabase -----------------------------------------------------------


class SupabaseChange(BaseModel):
    """The body of a Supabase database webhook (see supabase_functions.http_request)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["INSERT", "UPDATE", "DELETE"]
    table: Annotated[str, Field(min_length=1, max_length=63)]
    schema_: Annotated[str, Field(alias="schema", min_length=1, max_length=63)]
    record: dict[str, Any] | None = None
    old_record: dict[str, Any] | None = None


class UserRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: UUID
    # checked as /api/notify checks a welcome_email's address; null: a user without one
    email: Email | None = None
    raw_user_meta_data: dict[str, Any] | None = None


class TaskRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: StrictInt
    title: str
    assignee_id: UUID | None = None
    created_by: UUID | None = None
    assigned_at: AwareDatetime | None = None


class OldTaskRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    assignee_id: UUID | None = None


@dataclass(frozen=True)
class WelcomeEmail:
    user_id: UUID
    email: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class TaskAssignment:
    task_id: int
    title: str
    assignee_id: UUID
    assigner_id: UUID | None
    assigned_at: dt.datetime


@dataclass(frozen=True)
class Ignored:
    reason: str


SupabaseAction = WelcomeEmail | TaskAssignment | Ignored
SUPPORTED_TABLES = "auth.users (INSERT) and public.tasks (INSERT, UPDATE)"


def plan_supabase(body: dict[str, Any]) -> SupabaseAction:
    """What a Supabase change asks for: the same decision the database triggers make."""
    change: SupabaseChange = validate(SupabaseChange, body)
    where = (change.schema_, change.table)
    if where == ("auth", "users"):
        return _plan_user(change)
    if where == ("public", "tasks"):
        return _plan_task(change)
    raise ApiError(
        422,
        "unsupported table",
        f"{change.schema_[:63]}.{change.table[:63]}: this receiver handles {SUPPORTED_TABLES}",
    )


def _record(change: SupabaseChange) -> dict[str, Any]:
    if change.record is None:
        raise ApiError(422, "invalid payload", f"record: required for {change.type}")
    return change.record


def _plan_user(change: SupabaseChange) -> SupabaseAction:
    if change.type != "INSERT":
        return Ignored(f"auth.users {change.type}: only a signup (INSERT) sends a welcome email")
    user: UserRecord = validate(UserRecord, _record(change), "record")
    if not user.email:
        return Ignored("the new user has no email address")
    return WelcomeEmail(user.id, user.email, user.raw_user_meta_data or {})


def _plan_task(change: SupabaseChange) -> SupabaseAction:
    if change.type == "DELETE":
        return Ignored("public.tasks DELETE: deleting a task sends no email")
    task: TaskRecord = validate(TaskRecord, _record(change), "record")
    if task.assignee_id is None:
        return Ignored("the task has no assignee")
    if change.type == "UPDATE" and change.old_record is not None:
        old: OldTaskRecord = validate(OldTaskRecord, change.old_record, "old_record")
        if old.assignee_id == task.assignee_id:
            return Ignored("the assignee did not change")
    if task.assigned_at is None:
        raise ApiError(
            422,
            "invalid payload",
            "record.assigned_at: required with an assignee (it is part of the idempotency key; "
            "the column and the trigger that sets it come with `taskflow-jobs migrate`)",
        )
    return TaskAssignment(task.id, task.title, task.assignee_id, task.created_by, task.assigned_at)


# --- POST /api/notify ------------------------------------------------------------------


IdempotencyKey = Annotated[str, Field(pattern=KEY_PATTERN.pattern)]


class NotifyRequest(BaseModel):
    """`{"type", "data", "idempotency_key"?, "priority"?}`; the job payload is
    `{"type": type, **data}`. `"priority": "bulk"` puts a notification behind every
    transactional email (a bulk send must not delay a password reset)."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(min_length=1, max_length=100)]
    data: dict[str, Any]
    idempotency_key: IdempotencyKey | None = None
    priority: Literal["transactional", "bulk"] = "transactional"


@dataclass(frozen=True)
class Notification:
    payload: dict[str, Any]
    message_type: str
    idempotency_key: str | None
    priority: str = "transactional"


def plan_notify(body: dict[str, Any], headers: Headers) -> Notification:
    """Validate the request and the email job it describes (422 naming the field)."""
    request: NotifyRequest = validate(NotifyRequest, body)
    payload = {**request.data, "type": request.type}
    try:
        message = parse_message(payload)
    except InvalidMessage as exc:
        raise ApiError(422, "invalid payload", _data_path(str(exc))) from None
    if request.priority == "bulk" and message.type in TRANSACTIONAL_ONLY:
        raise ApiError(422, "invalid payload", f"priority: {message.type} is always transactional")
    key = request.idempotency_key or delivery_id(headers)
    if message.type == "welcome_email":
        # one welcome per user whichever path enqueues it (the trigger uses this key too)
        key = f"welcome_email:{message.user_id}"
    elif key is not None:
        key = f"notify:{key}"  # never collides with the keys the triggers build
    return Notification(payload, message.type, key, request.priority)


def _data_path(reason: str) -> str:
    """parse_message names fields of the job; in a request they live under `data`."""
    head, sep, fields = reason.partition(": ")
    if head.startswith("invalid ") and sep:
        return head + ": " + "; ".join(f"data.{part}" for part in fields.split("; "))
    return reason


def delivery_id(headers: Headers) -> str | None:
    """The sender's delivery id (stable across its retries), validated, or None."""
    for name in DELIVERY_ID_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        value = value.strip()
        if not KEY_PATTERN.match(value):
            raise ApiError(
                422, "invalid header", f"{name}: 1 to 200 printable ASCII characters, no spaces"
            )
        return value
    return None


# --- POST /api/events/{name} -----------------------------------------------------------


class ReportRequested(BaseModel):
    """taskflow.report.requested: daily-stats for `date` (None = yesterday)."""

    model_config = ConfigDict(extra="allow")

    date: dt.date | None = None


# Events whose payload a deployment trigger reads: validated here so a bad one is a 422 now
# rather than a failed flow run later, and normalized so every key the trigger templates
# reference is present.
KNOWN_EVENTS: dict[str, type[BaseModel]] = {"report.requested": ReportRequested}


def check_event_name(name: str) -> str:
    if len(name) > EVENT_NAME_MAX or not EVENT_NAME.match(name):
        raise ApiError(
            422,
            "invalid event name",
            f"name: lowercase letters, digits, '_', '-' in dot-separated words starting with a "
            f"letter, at most {EVENT_NAME_MAX} characters (e.g. report.requested)",
        )
    return name


def event_payload(name: str, body: dict[str, Any]) -> dict[str, Any]:
    model = KNOWN_EVENTS.get(name)
    if model is None:
        return body
    return validate(model, body, "body").model_dump(mode="json")
