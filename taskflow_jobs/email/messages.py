"""Email job payloads as pydantic models, discriminated by `type`.

The database triggers, the webhook receiver and `taskflow-jobs enqueue` all produce these
payloads; the dispatcher parses each one before sending. A payload that does not parse
is dead-lettered with a reason naming the field (the original design logged a warning
and deleted unknown messages, which silently lost jobs).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, HttpUrl, TypeAdapter, ValidationError

ShortText = Annotated[str, Field(min_length=1, max_length=500)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WelcomeEmail(_Message):
    """A new user signed up (trigger on auth.users)."""

    type: Literal["welcome_email"]
    user_id: UUID
    email: EmailStr
    name: Annotated[str, Field(max_length=200)] | None = None


class TaskAssigned(_Message):
    """A task got a new assignee; their email and name are looked up in profiles at send time."""

    type: Literal["task_assigned"]
    task_id: int
    task_title: ShortText
    assignee_id: UUID
    assigner_id: UUID | None = None


class Notification(_Message):
    """A generic email from `/api/notify` or `taskflow-jobs enqueue notification`."""

    type: Literal["notification"]
    to: EmailStr
    to_name: Annotated[str, Field(max_length=200)] | None = None
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    heading: Annotated[str, Field(max_length=200)] | None = None
    body: Annotated[str, Field(min_length=1, max_length=20_000)]
    action_url: HttpUrl | None = None
    action_label: Annotated[str, Field(max_length=100)] | None = None


EmailMessage = Annotated[WelcomeEmail | TaskAssigned | Notification, Field(discriminator="type")]
MESSAGE_TYPES: tuple[str, ...] = ("welcome_email", "task_assigned", "notification")

_adapter: TypeAdapter[EmailMessage] = TypeAdapter(EmailMessage)


class InvalidMessage(ValueError):
    """The payload is not a valid email job; the message names the field(s)."""


def describe_validation_error(exc: ValidationError) -> str:
    """`field: problem; field: problem` without echoing the (possibly private) input."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"][1:] or err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_message(payload: Any) -> WelcomeEmail | TaskAssigned | Notification:
    """Parse a queue payload, or raise InvalidMessage with a reason naming the field."""
    if not isinstance(payload, dict):
        raise InvalidMessage("payload must be a JSON object")
    kind = payload.get("type")
    if kind not in MESSAGE_TYPES:
        known = ", ".join(MESSAGE_TYPES)
        shown = repr(kind)[:60] if kind is not None else "missing"
        raise InvalidMessage(f"type: unknown message type {shown} (known: {known})")
    try:
        return _adapter.validate_python(payload)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {kind} payload: {describe_validation_error(exc)}") from None
