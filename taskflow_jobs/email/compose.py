"""From a parsed queue message to an email ready for a provider.

`task_assigned` messages carry ids only: the assignee's address and name are read from
`public.profiles` when the email is sent (one query per batch, `load_profiles`), so a
user who changed their address gets the email at the new one. A message that cannot
become an email (no such profile, no address, a template problem) raises `Undeliverable`
and is dead-lettered with that reason: retrying would not help.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any
from uuid import UUID

from taskflow_jobs.db import Connection
from taskflow_jobs.email.messages import Notification, TaskAssigned, WelcomeEmail
from taskflow_jobs.email.render import Renderer, paragraphs, single_line
from taskflow_jobs.email.unsubscribe import Unsubscribe
from taskflow_jobs.settings import SettingsError
from taskflow_jobs.sql import query

ParsedMessage = WelcomeEmail | TaskAssigned | Notification
MESSAGE_ID_HEADER = "X-TaskFlow-Message-Id"


def message_id_header(job_id: int, domain: str | None) -> str:
    """The same Message-ID every time a job is sent, so a duplicate of an at-least-once
    delivery can be recognised downstream (and threads do not split)."""
    return f"<taskflow.email.{job_id}@{domain or 'taskflow.invalid'}>"


class Undeliverable(ValueError):
    """This message can never become an email; the text is the dead-letter reason."""


@dataclass(frozen=True)
class Profile:
    id: UUID
    email: str | None
    full_name: str | None


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered email; `message_id` is the queue message it delivers."""

    message_id: int
    message_type: str
    sender: Address
    recipient: Address
    subject: str
    text: str
    html: str
    headers: tuple[tuple[str, str], ...] = ()  # List-Unsubscribe and its -Post

    def mime(self) -> EmailMessage:
        """The email as MIME (multipart/alternative: text first, then HTML)."""
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = self.recipient
        msg["Subject"] = self.subject
        msg["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id_header(self.message_id, self.sender.domain)
        msg[MESSAGE_ID_HEADER] = str(self.message_id)
        for name, value in self.headers:
            msg[name] = value
        msg.set_content(self.text)
        msg.add_alternative(self.html, subtype="html")
        return msg


_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


def address(addr_spec: str, display_name: str | None = None) -> Address:
    """An Address whose display name cannot inject headers; Undeliverable if malformed.

    Common addresses are split without the stdlib's header parser (~25 µs per email, a
    tenth of a batch's own CPU); anything unusual still goes through it.
    """
    addr_spec = addr_spec.strip()
    name = single_line(display_name, 100)
    try:
        if _PLAIN_ADDRESS.match(addr_spec):
            username, _, domain = addr_spec.rpartition("@")
            return Address(display_name=name, username=username, domain=domain)
        return Address(display_name=name, addr_spec=addr_spec)
    except (ValueError, TypeError, IndexError) as exc:
        raise Undeliverable(f"invalid email address {addr_spec[:100]!r}: {exc}") from None


def parse_sender(email_from: str) -> Address:
    """EMAIL_FROM (`Name <addr>` or `addr`) as an Address; SettingsError names the variable."""
    name, addr = email.utils.parseaddr(email_from)
    if not addr or "@" not in addr:
        raise SettingsError(f"EMAIL_FROM: not an email address: {email_from!r}")
    try:
        return address(addr, name)
    except Undeliverable as exc:
        raise SettingsError(f"EMAIL_FROM: {exc}") from None


def profile_ids(messages: Iterable[ParsedMessage]) -> set[UUID]:
    """Every profile the batch's task_assigned messages need (assignees and assigners)."""
    ids: set[UUID] = set()
    for message in messages:
        if isinstance(message, TaskAssigned):
            ids.add(message.assignee_id)
            if message.assigner_id is not None:
                ids.add(message.assigner_id)
    return ids


def load_profiles(conn: Connection, ids: Iterable[UUID]) -> dict[UUID, Profile]:
    """The profiles with these ids, in one query."""
    ids = list(ids)
    if not ids:
        return {}
    rows = conn.execute(query("email_profiles"), {"ids": ids}).fetchall()
    return {row["id"]: Profile(row["id"], row["email"], row["full_name"]) for row in rows}


def _context(message: ParsedMessage, profiles: Mapping[UUID, Profile]) -> tuple[Address, dict]:
    """The recipient and the template values of one message."""
    if isinstance(message, WelcomeEmail):
        name = single_line(message.name) or "there"
        return address(str(message.email), message.name), {"name": name, "email": message.email}
    if isinstance(message, TaskAssigned):
        assignee = profiles.get(message.assignee_id)
        if assignee is None:
            raise Undeliverable(f"assignee_id: no profile {message.assignee_id} in public.profiles")
        if not assignee.email:
            raise Undeliverable(f"assignee_id: profile {message.assignee_id} has no email address")
        assigner = profiles.get(message.assigner_id) if message.assigner_id else None
        context: dict[str, Any] = {
            "assignee_name": single_line(assignee.full_name) or "there",
            # a deleted or nameless assigner does not make the email less useful
            "assigner_name": single_line(assigner.full_name if assigner else None) or "A teammate",
            "task_title": single_line(message.task_title, 500),
            "task_id": message.task_id,
        }
        return address(assignee.email, assignee.full_name), context
    body = message.body.replace("\r\n", "\n")
    return address(str(message.to), message.to_name), {
        "to_name": single_line(message.to_name) or "there",
        "subject": single_line(message.subject),
        "heading": single_line(message.heading),
        "body": body,
        "paragraphs": paragraphs(body),
        "action_url": str(message.action_url) if message.action_url else None,
        "action_label": single_line(message.action_label) or "Open",
    }


def compose(
    message_id: int,
    message: ParsedMessage,
    profiles: Mapping[UUID, Profile],
    renderer: Renderer,
    sender: Address,
    unsubscribe: Unsubscribe | None = None,
) -> OutgoingEmail:
    """Render one message; raises Undeliverable (or TemplateProblem) when it cannot be sent."""
    recipient, context = _context(message, profiles)
    context["unsubscribe_url"] = unsubscribe.url if unsubscribe else None
    rendered = renderer.render(message.type, context)
    return OutgoingEmail(
        message_id=message_id,
        message_type=message.type,
        sender=sender,
        recipient=recipient,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        headers=unsubscribe.headers() if unsubscribe else (),
    )
