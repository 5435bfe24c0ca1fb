"""The durable Postgres queue, from Python.

Every function takes an open psycopg connection and runs inside the caller's
transaction: nothing here commits. The SQL lives in `sql/queries/queue.sql` and the
functions it calls in `sql/migrations/0002_jobs_queue.sql`.

A consumer claims a batch under a fresh token; `ack`, `retry_later`, `dead_letter` and
`release` only touch messages still leased to that token, so a consumer whose lease
expired (and whose messages another consumer took over) changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from taskflow_jobs.db import Connection
from taskflow_jobs.sql import query

CHANNEL = "jobs_new_message"

# The claim takes the lowest lane first: someone waits for a transactional email (a signup,
# an assignment); nobody waits for one bulk email among thousands.
PRIORITIES = {"transactional": 0, "bulk": 1}
TRANSACTIONAL, BULK = "transactional", "bulk"


def lane(priority: str) -> int:
    """The stored lane of a priority name; ValueError names the accepted ones."""
    try:
        return PRIORITIES[priority]
    except KeyError:
        raise ValueError(
            f"unknown priority {priority!r} (known: {', '.join(PRIORITIES)})"
        ) from None


def _interval(value: timedelta | float | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=float(value))


class Message(NamedTuple):
    """A leased message: a tuple, as a frozen dataclass's `__init__` cost more than decoding
    its row. No enqueue time: nothing here reads it, and it is the dearest column to fetch."""

    id: int
    queue: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    errors: list[dict[str, Any]]
    redrive_count: int = 0
    priority: int = 0  # its lane: 0 transactional, 1 bulk

    @property
    def type(self) -> str | None:
        value = self.payload.get("type")
        return value if isinstance(value, str) else None

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


@dataclass(frozen=True)
class Batch:
    """Messages leased to one token until their visibility timeout."""

    token: uuid.UUID
    messages: list[Message] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.messages]

    def __len__(self) -> int:
        return len(self.messages)


@dataclass(frozen=True)
class Retry:
    id: int
    error: str
    delay: timedelta | float


@dataclass(frozen=True)
class Failure:
    id: int
    reason: str


@dataclass(frozen=True)
class QueueMetrics:
    queue: str
    depth: int
    visible: int
    in_flight: int
    delayed: int
    oldest_age_seconds: float | None
    oldest_visible_age_seconds: float | None
    dead_letters: int
    measured_at: datetime


@dataclass(frozen=True)
class DeadLetter:
    id: int
    queue: str
    payload: dict[str, Any]
    enqueued_at: datetime
    dead_lettered_at: datetime
    attempt: int
    max_attempts: int
    errors: list[dict[str, Any]]
    reason: str
    redrive_count: int


def _ids(cur: psycopg.Cursor[Any]) -> list[int]:
    return [row["id"] for row in cur.fetchall()]


def send(
    conn: Connection,
    queue: str,
    payload: dict[str, Any],
    *,
    delay: timedelta | float | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
    priority: str = TRANSACTIONAL,
) -> int:
    """Enqueue one message; a second send with the same key returns the first one's id."""
    row = conn.execute(
        query("send"),
        {
            "queue": queue,
            "payload": Jsonb(payload),
            "delay": _interval(delay),
            "idempotency_key": idempotency_key,
            "max_attempts": max_attempts,
            "priority": lane(priority),
        },
    ).fetchone()
    return row["id"]


def send_batch(
    conn: Connection,
    queue: str,
    payloads: Sequence[dict[str, Any]],
    *,
    delay: timedelta | float | None = None,
    priority: str = TRANSACTIONAL,
) -> list[int]:
    """Enqueue many messages (no idempotency keys) in one statement.

    The payloads travel as one JSON array: one value to encode and parse, where an array
    of jsonb values costs an encoding, a quoting and a parse per message.
    """
    if not payloads:
        return []
    params = {
        "queue": queue,
        "payloads": Jsonb(list(payloads)),
        "delay": _interval(delay),
        "priority": lane(priority),
    }
    rows = conn.cursor(row_factory=tuple_row).execute(query("send_batch"), params).fetchall()
    return [row[0] for row in rows]


def claim(
    conn: Connection,
    queue: str,
    batch_size: int,
    visibility_timeout: timedelta | float,
    *,
    token: uuid.UUID | None = None,
    now: datetime | None = None,
    last_lane: str = BULK,
    leave_fresh: timedelta | float | None = None,
) -> Batch:
    """Lease up to `batch_size` visible messages (FOR UPDATE SKIP LOCKED), lowest lane
    first, from no lane above `last_lane` (TRANSACTIONAL: the express lane's claim);
    transactional messages visible for less than `leave_fresh` are left to an express lane."""
    token = token or uuid.uuid4()
    # tuple rows straight into Message: at a thousand rows a batch, dict rows cost more
    # than the database does
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            query("claim"),
            {
                "queue": queue,
                "batch_size": batch_size,
                "visibility_timeout": _interval(visibility_timeout),
                "token": token,
                "now": now,
                "last_lane": lane(last_lane),
                "leave_fresh": _interval(leave_fresh),
            },
        )
        .fetchall()
    )
    return Batch(
        token,
        [Message(r[0], queue, r[1], r[2], r[3], r[4] or [], r[5], r[6]) for r in rows],
    )


def ack(
    conn: Connection, token: uuid.UUID, ids: Iterable[int], *, now: datetime | None = None
) -> list[int]:
    """Archive delivered messages; returns the ids that were still leased to `token`."""
    ids = list(ids)
    if not ids:
        return []
    cursor = conn.cursor(row_factory=tuple_row)  # a thousand ids: no dict per row
    return [
        row[0] for row in cursor.execute(query("ack"), {"ids": ids, "token": token, "now": now})
    ]


def ack_many(
    conn: Connection, leases: Sequence[tuple[int, uuid.UUID]], *, now: datetime | None = None
) -> list[int]:
    """`ack` for the messages of several batches: (id, its batch's token) pairs."""
    if not leases:
        return []
    cursor = conn.cursor(row_factory=tuple_row)
    return [row[0] for row in cursor.execute(query("ack_many"), _leases(leases, now))]


async def ack_many_async(
    conn: psycopg.AsyncConnection[Any],
    leases: Sequence[tuple[int, uuid.UUID]],
    *,
    now: datetime | None = None,
) -> list[int]:
    """`ack_many` on an async connection (the dispatcher's event loop settles with it)."""
    if not leases:
        return []
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(query("ack_many"), _leases(leases, now))
    return [row[0] for row in await cursor.fetchall()]


def _leases(leases: Sequence[tuple[int, uuid.UUID]], now: datetime | None) -> dict[str, Any]:
    return {"ids": [i for i, _ in leases], "tokens": [t for _, t in leases], "now": now}


def retry_later_many(
    conn: Connection,
    token: uuid.UUID,
    retries: Iterable[Retry],
    *,
    now: datetime | None = None,
) -> list[int]:
    retries = list(retries)
    if not retries:
        return []
    params = {
        "ids": [r.id for r in retries],
        "errors": [r.error for r in retries],
        "delays": [_interval(r.delay) for r in retries],
        "token": token,
        "now": now,
    }
    return _ids(conn.execute(query("retry_later"), params))


def retry_later(
    conn: Connection,
    token: uuid.UUID,
    id: int,
    error: str,
    delay: timedelta | float,
    *,
    now: datetime | None = None,
) -> bool:
    """Make a leased message visible again after `delay`, appending `error` to its history."""
    return bool(retry_later_many(conn, token, [Retry(id, error, delay)], now=now))


def dead_letter_many(
    conn: Connection,
    token: uuid.UUID,
    failures: Iterable[Failure],
    *,
    now: datetime | None = None,
) -> list[int]:
    failures = list(failures)
    if not failures:
        return []
    params = {
        "ids": [f.id for f in failures],
        "reasons": [f.reason for f in failures],
        "token": token,
        "now": now,
    }
    return _ids(conn.execute(query("dead_letter"), params))


def dead_letter(
    conn: Connection,
    token: uuid.UUID,
    id: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> bool:
    """Move a leased message to the dead letters with its reason and error history."""
    return bool(dead_letter_many(conn, token, [Failure(id, reason)], now=now))


def skip_many(
    conn: Connection,
    token: uuid.UUID,
    skips: Iterable[Failure],
    *,
    now: datetime | None = None,
) -> list[int]:
    """Finalise leased messages unsent (archived with their reason); ids still leased."""
    skips = list(skips)
    if not skips:
        return []
    params = {
        "ids": [f.id for f in skips],
        "reasons": [f.reason for f in skips],
        "token": token,
        "now": now,
    }
    return _ids(conn.execute(query("skip"), params))


def release(
    conn: Connection, token: uuid.UUID, ids: Iterable[int], *, now: datetime | None = None
) -> list[int]:
    """Give leased messages back at once, without counting the attempt (clean shutdown)."""
    ids = list(ids)
    if not ids:
        return []
    return _ids(conn.execute(query("release"), {"ids": ids, "token": token, "now": now}))


def redrive(
    conn: Connection,
    *,
    ids: Sequence[int] | None = None,
    message_type: str | None = None,
    queue: str | None = None,
    all: bool = False,
) -> list[int]:
    """Put dead letters back in their queue with fresh attempts; history is kept.

    Without `ids` or `message_type` this redrives nothing unless `all=True`.
    """
    if ids is None and message_type is None and not all:
        raise ValueError("redrive needs ids, a message type, or all=True")
    params = {"ids": list(ids) if ids is not None else None, "queue": queue, "type": message_type}
    return _ids(conn.execute(query("redrive"), params))


def metrics(conn: Connection, queue: str | None = None) -> list[QueueMetrics]:
    rows = conn.execute(query("metrics"), {"queue": queue}).fetchall()
    return [QueueMetrics(**row) for row in rows]


def dead_letters(
    conn: Connection,
    *,
    queue: str | None = None,
    message_type: str | None = None,
    limit: int = 50,
) -> list[DeadLetter]:
    rows = conn.execute(
        query("dead_letters"), {"queue": queue, "type": message_type, "limit": limit}
    ).fetchall()
    return [DeadLetter(**row) for row in rows]


def next_visible_at(conn: Connection, queue: str) -> datetime | None:
    return conn.execute(query("next_visible_at"), {"queue": queue}).fetchone()["at"]


def message_state(conn: Connection, id: int) -> dict[str, Any] | None:
    """Where message `id` is now (pending / archived / dead), with its history."""
    return conn.execute(query("message_state"), {"id": id}).fetchone()
