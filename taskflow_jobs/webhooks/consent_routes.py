"""Recipients' consent on the receiver: one-click unsubscribe and SendGrid's Event Webhook.

- `GET /unsubscribe/{token}`: a small page with a confirm button; it changes nothing
  (mail scanners and link previews follow links).
- `POST /unsubscribe/{token}`: RFC 8058 one click (`List-Unsubscribe=One-Click`, sent by
  the mail client) or the page's button: turns the token's type off for its user.
  Idempotent, 200. The token is the credential: it is signed, so no other check applies.
- `POST /webhooks/sendgrid/events`: a signed batch of SendGrid events; `bounce`,
  `dropped`, `spamreport` and `unsubscribe` suppress the address. A missing or bad
  signature is 401 and stores nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from psycopg import AsyncConnection

from taskflow_jobs.email.unsubscribe import InvalidToken, signing_key, verify_token
from taskflow_jobs.settings import Settings
from taskflow_jobs.sql import query
from taskflow_jobs.webhooks.errors import ApiError, unavailable
from taskflow_jobs.webhooks.inputs import read_body
from taskflow_jobs.webhooks.sendgrid_events import (
    SOURCE,
    BadEvents,
    BadSignature,
    EventVerifier,
    parse_events,
)
from taskflow_jobs.webhooks.state import Receiver

log = logging.getLogger("taskflow_jobs.webhooks")
router = APIRouter()

MAX_UNSUBSCRIBE_BODY = 4096
# SendGrid batches events by size and time; a full batch stays well under this
MAX_EVENTS_BODY = 4 * 1024 * 1024
TYPE_NAMES = {"task_assigned": "task assignment emails", "notification": "notification emails"}


@dataclass(frozen=True)
class ConsentConfig:
    """What these routes need from the settings, checked when the app is built."""

    unsubscribe_key: bytes | None
    events: EventVerifier | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsentConfig:
        return cls(signing_key(settings), EventVerifier.from_settings(settings))


def _config(request: Request) -> ConsentConfig:
    return request.app.state.consent


def _receiver(request: Request) -> Receiver:
    return request.app.state.receiver


def _token(request: Request, token: str) -> tuple[UUID, str]:
    key = _config(request).unsubscribe_key
    if key is None:
        raise unavailable(
            "unsubscribe not configured", "set UNSUBSCRIBE_SECRET (or WEBHOOK_SECRET)"
        )
    try:
        return verify_token(key, token)
    except InvalidToken as exc:
        raise ApiError(400, "invalid unsubscribe link", str(exc)) from None


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:32rem;
margin:3rem auto;padding:0 1rem;color:#1f2933;">
<h1 style="font-size:1.4rem;">{title}</h1>
<p>{text}</p>{form}
</body></html>
"""
_FORM = """
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit" style="padding:.6rem 1.2rem;font-size:1rem;">Unsubscribe</button></form>"""


@router.get("/unsubscribe/{token}")
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """The confirm page; reading it changes nothing."""
    _, kind = _token(request, token)
    text = f"Stop receiving {TYPE_NAMES[kind]} from TaskFlow?"
    page = _PAGE.format(title="Unsubscribe", text=text, form=_FORM)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.post("/unsubscribe/{token}")
async def unsubscribe(token: str, request: Request) -> Response:
    """One click: turn the type off for the user (again is fine)."""
    user_id, kind = _token(request, token)
    await read_body(request, MAX_UNSUBSCRIBE_BODY)  # List-Unsubscribe=One-Click, or nothing
    async with _receiver(request).transaction() as conn:
        await _set_preference(conn, user_id, kind, enabled=False)
    log.info("unsubscribe: a user turned off %s", kind)
    if _wants_html(request):
        text = f"You will no longer receive {TYPE_NAMES[kind]}."
        return HTMLResponse(_PAGE.format(title="Unsubscribed", text=text, form=""))
    return JSONResponse({"status": "unsubscribed", "type": kind})


async def _set_preference(
    conn: AsyncConnection, user_id: UUID, kind: str, *, enabled: bool
) -> None:
    params = {"user_id": user_id, "type": kind, "enabled": enabled}
    await conn.execute(query("set_preference"), params)


@router.post("/webhooks/sendgrid/events")
async def sendgrid_events(request: Request) -> JSONResponse:
    """SendGrid's Event Webhook: verify the batch, suppress what it reports."""
    verifier = _config(request).events
    if verifier is None:
        raise unavailable(
            "sendgrid events not configured",
            "set SENDGRID_WEBHOOK_PUBLIC_KEY to the Signed Event Webhook's verification key",
        )
    body = await read_body(request, MAX_EVENTS_BODY)
    try:
        verifier.verify(request.headers, body)
    except BadSignature as exc:
        client = request.client.host if request.client else "?"
        log.warning("refused %s from %s: %s", request.url.path, client, exc)
        raise ApiError(401, "unauthorized") from None
    try:
        batch = parse_events(body)
    except BadEvents as exc:
        raise ApiError(400, "invalid events", str(exc)) from None
    added = 0
    if batch.suppress:
        params = {
            "emails": list(batch.suppress),
            "reasons": list(batch.suppress.values()),
            "source": SOURCE,
        }
        async with _receiver(request).transaction() as conn:
            cur = await conn.execute(query("suppress"), params)
            added = len(await cur.fetchall())
    log.info(
        "sendgrid events: %d received, %d addresses newly suppressed, %d ignored",
        batch.events,
        added,
        batch.ignored,
    )
    return JSONResponse(
        {
            "status": "ok",
            "events": batch.events,
            "suppressed": added,
            "already_suppressed": len(batch.suppress) - added,
            "ignored": batch.ignored,
        }
    )
