"""Email job payloads as pydantic models, discriminated by `type`.

The database triggers, the webhook receiver and `taskflow-jobs enqueue` all produce these
payloads; the dispatcher parses each one before sending. A payload that does not parse
is dead-lettered with a reason naming the field (the original design logged a warning
and deleted unknown messages, which silently lost jobs).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from uuid import UUID

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

ShortText = Annotated[str, Field(min_length=1, max_length=500)]

# Most addresses are plain: an ASCII dot-atom, an already-lowercase domain of LDH labels
# and a TLD that starts and ends with a letter. Those are accepted here as they are, which
# is what EmailStr returns for them; everything else (uppercase or IDN domains, quoting,
# "--" labels, special-use names, any doubt) goes through EmailStr itself, for its
# normalized value or its error. email_validator was a third of the dispatcher's own CPU.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z])?"
)


def plain_email(value: object) -> bool:
    """True when `value` is an address EmailStr would accept unchanged (a sufficient test)."""
    if not isinstance(value, str) or len(value) > 254 or not _PLAIN_EMAIL.fullmatch(value):
        return False
    local, domain = value.split("@")
    return (
        len(local) <= 64
        and "--" not in domain
        and domain.rsplit(".", 1)[1] not in SPECIAL_USE_DOMAIN_NAMES
    )


def _plain_or_full(value: object, full: ValidatorFunctionWrapHandler) -> str:
    return value if plain_email(value) else full(value)  # type: ignore[return-value]


Email = Annotated[EmailStr, WrapValidator(_plain_or_full)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WelcomeEmail(_Message):
    """A new user signed up (trigger on auth.users)."""

    type: Literal["welcome_email"]
    user_id: UUID
    email: Email
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
    to: Email
    to_name: Annotated[str, Field(max_length=200)] | None = None
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    heading: Annotated[str, Field(max_length=200)] | None = None
    body: Annotated[str, Field(min_length=1, max_length=20_000)]
    action_url: HttpUrl | None = None
    action_label: Annotated[str, Field(max_length=100)] | None = None


EmailMessage = Annotated[WelcomeEmail | TaskAssigned | Notification, Field(discriminator="type")]
MESSAGE_TYPES: tuple[str, ...] = ("welcome_email", "task_assigned", "notification")
# Someone is waiting for these: they never go in the bulk lane.
TRANSACTIONAL_ONLY: tuple[str, ...] = ("welcome_email", "task_assigned")

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
