"""The receiver's database work. Each request is one transaction: its receipts (replay
protection), the idempotency key and the job are committed together or not at all.

SQL lives in `sql/queries/webhooks.sql` (and `send` in `queue.sql`); the enqueue functions
are the ones the database triggers call, so both paths build the same payloads and keys.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection as _AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from taskflow_jobs.sql import query
from taskflow_jobs.webhooks.errors import ApiError
from taskflow_jobs.webhooks.payloads import Notification, TaskAssignment, WelcomeEmail

# the pool's connections return rows as dicts
AsyncConnection = _AsyncConnection[dict[str, Any]]

# How long an event's delivery id is remembered (senders retry for up to about three days).
DELIVERY_RETENTION = timedelta(days=7)


def make_pool(url: str, *, size: int = 10, timeout: float = 5.0) -> AsyncConnectionPool:
    """A pool opened by the app's lifespan.

    Connections are checked before each use, so a database restart costs no failed request
    once the database is back. Background reconnection gives up after a few seconds (the
    default backs off for five minutes, which could keep the receiver answering 503 for a
    minute after a long outage ended); the next request then starts a fresh attempt.
    """
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=size,
        open=False,
        timeout=timeout,
        reconnect_timeout=max(2 * timeout, 5.0),
        kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5},
        check=AsyncConnectionPool.check_connection,
        name="taskflow-webhooks",
    )


@dataclass(frozen=True)
class Job:
    id: int
    created: bool  # False: an idempotency key returned an existing job


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


async def claim_receipts(conn: AsyncConnection, keys: Mapping[str, datetime]) -> set[str]:
    """Record `keys` (key -> expiry) in this transaction; returns those already recorded."""
    if not keys:
        return set()
    names = sorted(keys)
    rows = await (
        await conn.execute(
            query("webhook_receipts_claim"),
            {"keys": names, "expires_at": [keys[k] for k in names]},
        )
    ).fetchall()
    return set(names) - {row["key"] for row in rows}


def signature_receipt(replay_key: str | None, expires_at: float | None) -> dict[str, datetime]:
    if replay_key is None or expires_at is None:
        return {}
    return {replay_key: _at(expires_at)}


def delivery_receipt(event: str, delivery: str | None) -> dict[str, datetime]:
    if delivery is None:
        return {}
    return {f"event:{event}:{delivery}": _at(time.time()) + DELIVERY_RETENTION}


async def _job(conn: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    return await (await conn.execute(query("webhook_job"), {"id": job_id})).fetchone()


async def _created(conn: AsyncConnection, job_id: int) -> Job:
    row = await _job(conn, job_id)
    return Job(job_id, bool(row and row["created"]))


async def enqueue_welcome_email(conn: AsyncConnection, action: WelcomeEmail) -> Job:
    params = {"user_id": action.user_id, "email": action.email, "meta": Jsonb(action.meta)}
    row = await (await conn.execute(query("webhook_enqueue_welcome_email"), params)).fetchone()
    return await _created(conn, row["id"])


async def enqueue_task_assigned(conn: AsyncConnection, action: TaskAssignment) -> Job:
    params = {
        "task_id": action.task_id,
        "title": action.title,
        "assignee_id": action.assignee_id,
        "assigner_id": action.assigner_id,
        "assigned_at": action.assigned_at,
    }
    row = await (await conn.execute(query("webhook_enqueue_task_assigned"), params)).fetchone()
    return await _created(conn, row["id"])


async def enqueue_notification(conn: AsyncConnection, note: Notification) -> Job:
    """Enqueue; a reused idempotency key returns the first job, unless the request differs (409)."""
    params = {
        "queue": EMAIL_QUEUE,
        "payload": Jsonb(note.payload),
        "delay": None,
        "idempotency_key": note.idempotency_key,
        "max_attempts": None,
        "priority": queue.lane(note.priority),
    }
    row = await (await conn.execute(query("send"), params)).fetchone()
    job_id = row["id"]
    if note.idempotency_key is None:
        return Job(job_id, True)
    existing = await _job(conn, job_id)
    if existing is None:  # the job was cleaned up; the key still stands
        return Job(job_id, False)
    if existing["created"]:
        return Job(job_id, True)
    same_type = existing["payload"].get("type") == note.message_type
    if existing["payload"] != note.payload and not (
        note.message_type == "welcome_email" and same_type
    ):
        raise ApiError(
            409,
            "idempotency key reused",
            f"job {job_id} was enqueued with this idempotency key for a different request; "
            "use a new key for a new request",
        )
    return Job(job_id, False)


async def ready(conn: AsyncConnection) -> bool:
    row = await (await conn.execute(query("webhook_ready"))).fetchone()
    return bool(row["ready"])
