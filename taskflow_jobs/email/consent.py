"""Whether each recipient of a batch still wants (and can take) the email, in one query.

Before a batch is rendered, `ConsentCheck.screen` reads the preferences of every user the
batch writes to and the suppression entry of every address (`email_consent`, one query
per batch). A message whose user turned its type off, or whose address is suppressed, is
finalised as skipped with that reason: visible in the archive, never sent, never dropped.
`welcome_email` is transactional and has no preference, but a suppressed address does not
get it either. The messages that go out get their List-Unsubscribe links here.

Addresses are compared in lower case everywhere (the suppression index is on lower(email)).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from taskflow_jobs.db import Connection
from taskflow_jobs.email.compose import (
    OutgoingEmail,
    ParsedMessage,
    Profile,
    load_profiles,
    profile_ids,
)
from taskflow_jobs.email.messages import Notification, TaskAssigned, WelcomeEmail
from taskflow_jobs.email.outcomes import Action, Outcome
from taskflow_jobs.email.providers.base import SendResult
from taskflow_jobs.email.unsubscribe import TYPE_CODES, Unsubscribe, UnsubscribeLinks
from taskflow_jobs.settings import Settings
from taskflow_jobs.sql import query


@dataclass(frozen=True)
class Recipient:
    user_id: UUID | None
    email: str | None  # lower case


@dataclass
class Consent:
    """What the database says about a batch's recipients."""

    disabled: dict[UUID, frozenset[str]] = field(default_factory=dict)
    suppressed: dict[str, tuple[str, str]] = field(default_factory=dict)  # email: reason, source
    users: dict[str, UUID] = field(default_factory=dict)  # email: the profile that has it

    def user_of(self, recipient: Recipient) -> UUID | None:
        if recipient.user_id is not None:
            return recipient.user_id
        return self.users.get(recipient.email) if recipient.email else None

    def skip_reason(self, message_type: str, recipient: Recipient) -> str | None:
        """Why this email must not be sent, or None (pure)."""
        if recipient.email is not None and recipient.email in self.suppressed:
            reason, source = self.suppressed[recipient.email]
            return f"suppressed: {reason} (via {source})"
        user = self.user_of(recipient)
        turned_off = self.disabled.get(user, frozenset()) if user is not None else frozenset()
        if message_type in TYPE_CODES and message_type in turned_off:  # not welcome_email
            return f"opted out: the recipient turned off {message_type} emails"
        return None


def recipient_of(message: ParsedMessage, profiles: Mapping[UUID, Profile]) -> Recipient:
    """Who a message writes to; the address is None when the profile has none (yet)."""
    if isinstance(message, WelcomeEmail):
        return Recipient(message.user_id, str(message.email).strip().lower())
    if isinstance(message, TaskAssigned):
        profile = profiles.get(message.assignee_id)
        email = profile.email.strip().lower() if profile and profile.email else None
        return Recipient(message.assignee_id, email)
    assert isinstance(message, Notification)
    return Recipient(None, str(message.to).strip().lower())


def load_consent(conn: Connection, recipients: Iterable[Recipient]) -> Consent:
    """Preferences and suppressions of these recipients, in one query."""
    recipients = list(recipients)
    user_ids = sorted({r.user_id for r in recipients if r.user_id is not None})
    emails = sorted({r.email for r in recipients if r.email is not None})
    consent = Consent()
    if not user_ids and not emails:
        return consent
    rows = conn.execute(query("email_consent"), {"user_ids": user_ids, "emails": emails})
    for row in rows.fetchall():
        user, email = row["user_id"], row["email"]
        if user is not None:
            if row["disabled"]:
                consent.disabled[user] = frozenset(row["disabled"])
            if email is not None:
                consent.users.setdefault(email, user)
        if email is not None and row["suppressed_reason"] is not None:
            consent.suppressed[email] = (row["suppressed_reason"], row["suppressed_source"])
    return consent


def suppress(conn: Connection, entries: Mapping[str, str], source: str) -> list[str]:
    """Add addresses (address: reason) to the suppression list; returns the ones added."""
    if not entries:
        return []
    emails = [e.strip() for e in entries]
    params = {"emails": emails, "reasons": list(entries.values()), "source": source}
    return [row["email"] for row in conn.execute(query("suppress"), params).fetchall()]


def hard_bounces(
    sent: Sequence[tuple[Any, OutgoingEmail]], results: Sequence[SendResult]
) -> dict[str, str]:
    """The addresses a provider refused for good (address: why), to be suppressed."""
    return {
        item.recipient.addr_spec: result.bounce
        for (_, item), result in zip(sent, results, strict=True)
        if result.bounce
    }


def unsuppress(conn: Connection, email: str) -> bool:
    return conn.execute(query("unsuppress"), {"email": email.strip()}).fetchone() is not None


def suppressions(conn: Connection, match: str | None = None, limit: int = 100) -> list[Any]:
    return conn.execute(query("suppressions"), {"match": match, "limit": limit}).fetchall()


def set_preference(conn: Connection, user_id: UUID, message_type: str, enabled: bool) -> None:
    """Turn one type on or off for a user (idempotent; nothing for an unknown user)."""
    params = {"user_id": user_id, "type": message_type, "enabled": enabled}
    conn.execute(query("set_preference"), params)


class _Message(Protocol):
    id: int
    attempt: int

    @property
    def type(self) -> str | None: ...


@dataclass
class Screening:
    """A batch after the check: what to render, what to skip (outcomes), the links."""

    kept: list[tuple[Any, ParsedMessage]] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)
    links: dict[int, Unsubscribe] = field(default_factory=dict)


class ConsentCheck:
    """The dispatcher's consent step: one query per batch, then a pure decision per message."""

    def __init__(self, settings: Settings) -> None:
        self.links = UnsubscribeLinks(settings)

    def look_up(
        self, conn: Connection, parsed: Sequence[tuple[_Message, ParsedMessage]]
    ) -> tuple[dict[UUID, Profile], Screening]:
        """The profiles a batch needs, then its recipients' consent: two queries per batch."""
        ids = profile_ids(p for _, p in parsed)
        profiles = load_profiles(conn, ids) if ids else {}
        return profiles, self.screen(conn, parsed, profiles)

    def screen(
        self,
        conn: Connection,
        parsed: Sequence[tuple[_Message, ParsedMessage]],
        profiles: Mapping[UUID, Profile],
    ) -> Screening:
        recipients = [recipient_of(payload, profiles) for _, payload in parsed]
        consent = load_consent(conn, recipients)
        result = Screening()
        for (message, payload), recipient in zip(parsed, recipients, strict=True):
            reason = consent.skip_reason(payload.type, recipient)
            if reason is not None:
                skipped = Outcome(message.id, message.type, message.attempt, Action.SKIPPED, reason)
                result.skipped.append(skipped)
                continue
            result.kept.append((message, payload))
            user = consent.user_of(recipient)
            link = self.links.for_user(user, payload.type) if user is not None else None
            if link is not None:
                result.links[message.id] = link
        return result
