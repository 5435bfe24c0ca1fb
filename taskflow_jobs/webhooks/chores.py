"""The receiver's background chores: expire receipts, and ask for a sweep when email waits.

The receiver is the long-lived process every installation runs, so it is also the one
that notices email nobody is sending (no `consume`, or one that died holding a lease):
when messages have been claimable for EMAIL_SWEEP_AFTER seconds it emits
`taskflow.email.overdue`, and that event's deployment trigger starts an `email-dispatch`
run on the worker. With `consume` running nothing is ever overdue, so no run is made:
the run history shows sweeps only when they sent something.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, cast

import psycopg
from psycopg_pool import AsyncConnectionPool

from taskflow_jobs.jobs import retention
from taskflow_jobs.settings import EMAIL_QUEUE, Settings
from taskflow_jobs.sql import query
from taskflow_jobs.webhooks.events import EventsUnavailable, PrefectEvents, make_event

log = logging.getLogger("taskflow_jobs.webhooks")

EXPIRY_INTERVAL = 60.0
EMAIL_OVERDUE = "taskflow.email.overdue"
# one overdue event per queue and sweep period, whichever receiver replica sends it
OVERDUE_NAMESPACE = uuid.UUID("0f6c1d52-3b9e-4e41-8a57-6c2d9b7f1e33")
# while email stays overdue, a sweep is asked for again at most this often: a sweep
# takes a worker poll and a subprocess start before it sends anything
MIN_REPEAT = 60.0


async def expire_receipts_forever(pool: AsyncConnectionPool) -> None:
    """Delete expired receipts every minute; a failure is retried next time."""
    while True:
        await asyncio.sleep(EXPIRY_INTERVAL)
        try:
            deleted = await retention.expire_receipts(pool)
        except psycopg.Error as exc:
            log.debug("receipt expiry skipped: %s", type(exc).__name__)
            continue
        if deleted:
            log.debug("deleted %d expired webhook receipts", deleted)


async def overdue(
    pool: AsyncConnectionPool, after: float, queue: str = EMAIL_QUEUE
) -> tuple[int, float]:
    """(how many, seconds the oldest waited) of the messages claimable for `after` s."""
    params = {"queue": queue, "after": after, "now": None}
    async with pool.connection() as conn:
        cur = await conn.execute(query("email_overdue"), params)
        row = cast(dict[str, Any], await cur.fetchone())  # the pool's rows are dicts
    return int(row["n"]), float(row["oldest_seconds"] or 0.0)


async def watch_overdue(
    pool: AsyncConnectionPool, events: PrefectEvents, after: float, interval: float
) -> None:
    """Every `interval` seconds: if email has waited `after` seconds, ask for a sweep (at
    most once per `after` seconds or MIN_REPEAT, whichever is longer, so a sweep under
    way is not asked for again)."""
    repeat = max(after, MIN_REPEAT)
    asked_at = float("-inf")
    while True:
        await asyncio.sleep(interval)
        try:
            count, oldest = await overdue(pool, after)
        except psycopg.Error as exc:
            log.debug("overdue check skipped: %s", type(exc).__name__)
            continue
        if not count or time.monotonic() - asked_at < repeat:
            continue
        period = int(time.time() // repeat)
        event = make_event(
            EMAIL_OVERDUE,
            {"queue": EMAIL_QUEUE, "count": count, "oldest_seconds": round(oldest, 1)},
            uuid.uuid5(OVERDUE_NAMESPACE, f"{EMAIL_QUEUE}:{period}"),
        )
        try:
            await events.emit([event])
        except EventsUnavailable as exc:
            log.warning("%d email(s) waiting, but no sweep could be asked for: %s", count, exc)
            continue
        asked_at = time.monotonic()
        log.info(
            "%d email(s) waiting for %.0fs or more: asked for an email-dispatch sweep",
            count,
            oldest,
        )


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def start(
    pool: AsyncConnectionPool, events: PrefectEvents | None, settings: Settings
) -> list[asyncio.Task[None]]:
    """The chores as tasks of the running loop (the overdue watch needs Prefect events)."""
    tasks = [asyncio.create_task(expire_receipts_forever(pool), name="expire webhook receipts")]
    if events is not None:
        watch = watch_overdue(
            pool, events, settings.email_sweep_after, settings.email_sweep_interval
        )
        tasks.append(asyncio.create_task(watch, name="watch overdue email"))
    return tasks
