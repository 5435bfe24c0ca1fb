"""The receiver's routes. Each POST reads the body (size-limited), authenticates it, parses
and validates it, then does its work in one transaction and answers only after the commit.

Order of checks: 413 (while reading) → 401 → 415 → 400 (JSON) → 422 (fields) → 409/503.
A request that changes nothing (an ignored Supabase change) touches no database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from taskflow_jobs.webhooks import store
from taskflow_jobs.webhooks.auth import Caller, Unauthorized
from taskflow_jobs.webhooks.errors import ApiError, unavailable
from taskflow_jobs.webhooks.events import (
    EVENT_PREFIX,
    EventsRejected,
    EventsUnavailable,
    event_id_for,
    make_event,
)
from taskflow_jobs.webhooks.inputs import parse_json_object, read_body, require_json_content_type
from taskflow_jobs.webhooks.payloads import (
    Ignored,
    WelcomeEmail,
    check_event_name,
    delivery_id,
    event_payload,
    plan_notify,
    plan_supabase,
)
from taskflow_jobs.webhooks.state import Receiver

log = logging.getLogger("taskflow_jobs.webhooks")
router = APIRouter()


def receiver(request: Request) -> Receiver:
    return request.app.state.receiver


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def authenticated_body(request: Request) -> tuple[bytes, Caller]:
    rx = receiver(request)
    body = await read_body(request, rx.max_body)
    try:
        caller = rx.auth.authenticate(request.headers, body)
    except Unauthorized as exc:
        log.warning("refused %s from %s: %s", request.url.path, _client(request), exc.reason)
        raise ApiError(401, "unauthorized") from None
    return body, caller


async def spend_receipts(
    conn: Any,
    request: Request,
    caller: Caller,
    extra: dict | None = None,
    *,
    idempotent: bool = False,
) -> set[str]:
    """Record the signature (and `extra` receipts) in the caller's transaction.

    A signature already recorded is a replay: 401, and the transaction rolls back. Unless
    the request is `idempotent` (its effect is keyed: a Supabase change, a keyed notify or
    event): then repeating it is harmless and the sender that resends the same bytes after a
    lost answer gets the original answer (same job id) instead of a confusing 401.
    """
    keys = {**store.signature_receipt(caller.replay_key, caller.expires_at), **(extra or {})}
    held = await store.claim_receipts(conn, keys)
    if caller.replay_key in held and not idempotent:
        log.warning("refused %s from %s: replayed signature", request.url.path, _client(request))
        raise ApiError(401, "unauthorized")
    return held


def accepted(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"status": "accepted", **body}, status_code=202)


def _log_job(route: str, job: store.Job, message_type: str, started: float) -> None:
    log.info(
        "%s: %s job %s (%s)",
        route,
        message_type,
        job.id,
        "new" if job.created else "duplicate, existing job returned",
        extra={
            "message_id": job.id,
            "message_type": message_type,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )


@router.post("/webhooks/supabase")
async def supabase_webhook(request: Request) -> JSONResponse:
    """A Supabase database webhook: signup → welcome_email, new assignee → task_assigned."""
    started = time.perf_counter()
    rx = receiver(request)
    body, caller = await authenticated_body(request)
    require_json_content_type(request)
    action = plan_supabase(parse_json_object(body))
    if isinstance(action, Ignored):
        return JSONResponse({"status": "ignored", "reason": action.reason}, status_code=200)
    async with rx.transaction() as conn:
        await spend_receipts(conn, request, caller, idempotent=True)
        if isinstance(action, WelcomeEmail):
            message_type = "welcome_email"
            job = await store.enqueue_welcome_email(conn, action)  # type: ignore[arg-type]
        else:
            message_type = "task_assigned"
            job = await store.enqueue_task_assigned(conn, action)  # type: ignore[arg-type]
    # committed: from here on the job is durable
    if job.created:
        rx.enqueued.job_enqueued(job.id, message_type)
    _log_job("supabase", job, message_type, started)
    return accepted({"job_id": job.id, "type": message_type, "duplicate": not job.created})


@router.post("/api/notify")
async def notify(request: Request) -> JSONResponse:
    """Enqueue one email job: `{"type": ..., "data": {...}, "idempotency_key": ...}`."""
    started = time.perf_counter()
    rx = receiver(request)
    body, caller = await authenticated_body(request)
    require_json_content_type(request)
    note = plan_notify(parse_json_object(body), request.headers)
    async with rx.transaction() as conn:
        await spend_receipts(conn, request, caller, idempotent=note.idempotency_key is not None)
        job = await store.enqueue_notification(conn, note)  # type: ignore[arg-type]
    if job.created:
        rx.enqueued.job_enqueued(job.id, note.message_type)
    _log_job("notify", job, note.message_type, started)
    return accepted({"job_id": job.id, "type": note.message_type, "duplicate": not job.created})


@router.post("/api/events/{name}")
async def emit_event(name: str, request: Request) -> JSONResponse:
    """Emit the Prefect event `taskflow.<name>` with the JSON body (or {}) as its payload."""
    rx = receiver(request)
    body, caller = await authenticated_body(request)
    check_event_name(name)
    if body.strip():
        require_json_content_type(request)
        payload = parse_json_object(body)
    else:
        payload = {}
    payload = event_payload(name, payload)
    event_name = EVENT_PREFIX + name
    if rx.events is None:
        raise unavailable("prefect unavailable", "the receiver has no PREFECT_API_URL")
    delivery = delivery_id(request.headers)
    event_id = event_id_for(event_name, delivery)
    answer = {"event": event_name, "event_id": str(event_id)}
    async with rx.transaction() as conn:
        receipt = store.delivery_receipt(event_name, delivery)
        held = await spend_receipts(conn, request, caller, receipt, idempotent=bool(receipt))
        if held & receipt.keys():  # this delivery id was emitted before
            return accepted({**answer, "duplicate": True})
        try:
            await rx.events.emit([make_event(event_name, payload, event_id)])
        except EventsRejected as exc:
            raise ApiError(422, "event rejected", str(exc)) from None
        except EventsUnavailable as exc:
            log.warning("could not emit %s: %s", event_name, exc)
            raise unavailable(
                "prefect unavailable", f"{exc}; nothing was emitted, retry later"
            ) from None
    log.info("emitted %s (event %s)", event_name, event_id)
    return accepted({**answer, "duplicate": False})


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """200 while jobs can be accepted (database reachable and migrated); Prefect is reported."""
    rx = receiver(request)
    database, prefect = await asyncio.gather(rx.database_status(), rx.prefect_status())
    ok = database == "ok"
    status = "ok" if ok and prefect == "ok" else ("degraded" if ok else "unavailable")
    headers = {} if ok else {"Retry-After": "10"}
    return JSONResponse(
        {"status": status, "database": database, "prefect": prefect},
        status_code=200 if ok else 503,
        headers=headers,
    )
