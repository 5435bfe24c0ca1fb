"""Helpers for email dispatch tests: a movable clock, draining the queue without Prefect,
reading a message's state, signing users up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from taskflow_jobs.devstack.sendgrid_stub import StubServer
from taskflow_jobs.email.outcomes import DispatchStats
from taskflow_jobs.email.worker.batch import Dispatcher, Ticket
from taskflow_jobs.email.worker.run import RunPlan, run_dispatch
from taskflow_jobs.settings import Settings

API_KEY = "SG.test-key-do-not-log"


class Clock:
    """The `now` every queue operation sees; starts an hour ahead of the real clock so
    that messages enqueued by the test (at the database's now()) are visible."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def sendgrid_settings(stub: StubServer, **overrides: Any) -> dict[str, Any]:
    return {
        "email_provider": "sendgrid",
        "sendgrid_api_url": stub.url,
        "sendgrid_api_key": API_KEY,
        "sendgrid_timeout": 2.0,
        **overrides,
    }


async def _drain(settings: Settings, clock: Clock | None) -> DispatchStats:
    dispatcher = Dispatcher(settings, settings.database_url, **({"clock": clock} if clock else {}))
    await dispatcher.open()
    stats = DispatchStats()
    try:
        plan = RunPlan(budget=60, concurrency=settings.email_concurrency)

        async def run_batch(window: float, number: int, ticket: Ticket) -> Any:
            return await dispatcher.run_batch(window, stats, ticket)

        await run_dispatch(dispatcher, run_batch, plan, stats)
    finally:
        await dispatcher.close()
    return stats


def drain(settings: Settings, clock: Clock | None = None) -> DispatchStats:
    """Dispatch until nothing is visible (no Prefect: the library loop the flow runs)."""
    return asyncio.run(_drain(settings, clock))


def state(conn: psycopg.Connection, message_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT 'pending' AS state, id, attempt, errors, visible_at, claim_token, NULL AS reason"
        " FROM jobs.messages WHERE id = %(id)s"
        " UNION ALL SELECT 'archived', id, attempt, errors, NULL, NULL, NULL"
        " FROM jobs.archived(%(id)s)"
        " UNION ALL SELECT 'dead', id, attempt, errors, NULL, NULL, reason"
        " FROM jobs.dead_letters WHERE id = %(id)s",
        {"id": message_id},
    ).fetchone()
    assert row is not None, f"message {message_id} vanished"
    return row


def signup(conn: psycopg.Connection, email: str, full_name: str | None = None) -> tuple[str, int]:
    """INSERT INTO auth.users like the app does; returns the user id and its email job id."""
    meta = {"full_name": full_name} if full_name is not None else {}
    row = conn.execute(
        "INSERT INTO auth.users (id, email, raw_user_meta_data)"
        " VALUES (gen_random_uuid(), %s, %s) RETURNING id",
        (email, psycopg.types.json.Jsonb(meta)),
    ).fetchone()
    job = conn.execute(
        "SELECT message_id FROM jobs.idempotency_keys WHERE key = %s",
        (f"welcome_email:{row['id']}",),
    ).fetchone()
    return str(row["id"]), job["message_id"]
