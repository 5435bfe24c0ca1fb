"""The receiver asks for a sweep only when email waits: `taskflow.email.overdue` reaches
the real Prefect server for a message nobody sent (never claimed, or its lease expired),
and nothing is emitted while every message is fresh or leased."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from taskflow_jobs.sql import query
from taskflow_jobs.webhooks.chores import EMAIL_OVERDUE
from tests.integration.webhooks.test_events import read_events
from tests.support.receiver import running_receiver
from tests.support.waiting import wait_for

WELCOME = {"type": "welcome_email", "user_id": "7d1c5c8e-8f5e-4a38-9a4f-3d2f4c1b9a10"}


def overdue(conn: psycopg.Connection, after: float, now: datetime) -> dict[str, Any]:
    return conn.execute(
        query("email_overdue"), {"queue": EMAIL_QUEUE, "after": after, "now": now}
    ).fetchone()


def test_overdue_counts_unclaimed_and_expired_leases_only(conn: psycopg.Connection) -> None:
    leased = queue.send(conn, EMAIL_QUEUE, WELCOME)
    queue.send(conn, EMAIL_QUEUE, WELCOME)  # nobody claims this one
    queue.send(conn, EMAIL_QUEUE, WELCOME, delay=3600)  # not due yet
    now = datetime.now(UTC) + timedelta(seconds=1)
    batch = queue.claim(conn, EMAIL_QUEUE, 1, 600, now=now)  # leased for 10 minutes
    assert batch.ids == [leased]
    assert overdue(conn, 60, now + timedelta(seconds=30))["n"] == 0, "fresh or leased"
    row = overdue(conn, 60, now + timedelta(seconds=90))
    assert row["n"] == 1 and 90 <= row["oldest_seconds"] <= 92  # the unclaimed one
    # the lease runs out at +600 s: from +660 s both are overdue
    assert overdue(conn, 60, now + timedelta(seconds=700))["n"] == 2


@pytest.mark.parametrize("with_overdue", [True, False])
def test_the_receiver_asks_for_a_sweep_only_when_email_waits(
    database_url: str, prefect_api_url: str, conn: psycopg.Connection, with_overdue: bool
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    if with_overdue:
        queue.send(conn, EMAIL_QUEUE, WELCOME)
    with running_receiver(
        database_url,
        prefect_api_url=prefect_api_url,
        email_sweep_after=5,
        email_sweep_interval=0.5,
    ):
        if with_overdue:
            [event] = wait_for(
                lambda: [
                    e
                    for e in read_events(prefect_api_url, EMAIL_OVERDUE, since)
                    if e.occurred >= since and e.payload.get("count") == 1
                ],
                60,
                "the overdue event",
            )
            assert event.payload["queue"] == EMAIL_QUEUE and event.payload["oldest_seconds"] >= 5
            # asked once (again at most once a minute), not at every check
            time.sleep(3)
            assert len(read_events(prefect_api_url, EMAIL_OVERDUE, since)) == 1
        else:
            time.sleep(8)  # longer than EMAIL_SWEEP_AFTER, with checks every 0.5 s
            assert read_events(prefect_api_url, EMAIL_OVERDUE, since) == []
