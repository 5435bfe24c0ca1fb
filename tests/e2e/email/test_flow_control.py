"""Flow control with real `consume` processes, the SendGrid stand-in and PostgreSQL: a
bulk storm does not delay a signup, a throttling provider slows every consumer down,
the shared rate limit holds across consumers, and a paused queue sends nothing and
loses nothing (paused from the CLI or from the Prefect variable)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate

from taskflow_jobs.devstack.sendgrid_stub import Reply, StubServer
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.e2e.email import test_consume
from tests.e2e.email.test_consume import Consumers, counts, wait_until
from tests.support.dispatch_helpers import signup

CLI = str(Path(sys.executable).parent / "taskflow-jobs")
consumers = test_consume.consumers  # the same fixture: consume subprocesses, killed at the end
SWITCH = "taskflow-queue-pause"  # the Prefect variable of the default block prefix


@pytest.fixture(autouse=True)
def switch_left_open(prefect_api: str) -> Iterator[None]:
    """Every consumer of the session mirrors the variable: never leave it paused."""
    yield
    asyncio.run(set_variable(SWITCH, {}))


def listening(conn: psycopg.Connection, n: int) -> bool:
    found = conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%'"
    ).fetchone()
    return found["n"] >= n


def start(consumers: Consumers, conn: psycopg.Connection, n: int, **env: str) -> None:
    for _ in range(n):
        consumers.start(**env)
    wait_until(lambda: listening(conn, n), 90, f"{n} consumers listening")


def bulk_notes(conn: psycopg.Connection, n: int) -> list[int]:
    notes = [
        {"type": "notification", "to": f"list{i}@example.com", "subject": "News", "body": "Hi"}
        for i in range(n)
    ]
    return queue.send_batch(conn, EMAIL_QUEUE, notes, priority=queue.BULK)


def max_in_window(times: list[float], window: float) -> int:
    times, best, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_a_signup_overtakes_a_bulk_storm(
    conn: psycopg.Connection, consumers: Consumers, sendgrid: StubServer
) -> None:
    sendgrid.stub.script = lambda body: Reply(202, delay=0.01)
    bulk = bulk_notes(conn, 3000)
    start(consumers, conn, 1, EMAIL_BATCH_SIZE="50")
    wait_until(lambda: len(sendgrid.stub.received) >= 100, 120, "the bulk send under way")
    _, welcome = signup(conn, "new@example.com", "New User")
    wait_until(
        lambda: any(r.message_id == welcome for r in sendgrid.stub.received), 60, "the welcome"
    )
    order = [r.message_id for r in sendgrid.stub.received]
    before = order.index(welcome)
    unsent = len(bulk) - before
    assert unsent > 2000, f"the welcome waited for {before} bulk emails"
    consumers.stop_all()


def test_a_welcome_does_not_wait_for_the_bulk_batches_in_flight(
    conn: psycopg.Connection, consumers: Consumers, sendgrid: StubServer
) -> None:
    """With full bulk batches in flight (the default 4 x 500), a signup's welcome email is
    claimed by the express lane and reaches the provider ahead of their queued sends:
    counted in bulk emails the provider received between the signup's commit and its
    welcome, not in seconds (a batch that claimed it would make it wait for ~1,500)."""
    sendgrid.stub.script = lambda body: Reply(202, delay=0.005)
    bulk = bulk_notes(conn, 4000)
    start(consumers, conn, 1, EMAIL_BATCH_SIZE="500", EMAIL_CONCURRENCY="4")
    wait_until(lambda: len(sendgrid.stub.received) >= 100, 120, "the bulk send under way")
    committed_after = len(sendgrid.stub.received)
    _, welcome = signup(conn, "express@example.com", "Express User")
    wait_until(
        lambda: any(r.message_id == welcome for r in sendgrid.stub.received), 60, "the welcome"
    )
    order = [r.message_id for r in sendgrid.stub.received]
    overtaken = order.index(welcome) - committed_after
    assert overtaken < 300, f"{overtaken} bulk emails reached the provider before the welcome"
    still_queued = len(bulk) - (len(order) - 1)
    assert still_queued > 2000, "sent while most of the bulk still waited"
    consumers.stop_all()
    assert "express lane:" not in consumers.log(0), "the express lane reported no failure"


def test_a_throttling_provider_slows_every_consumer_down(
    conn: psycopg.Connection, consumers: Consumers, sendgrid: StubServer
) -> None:
    calls = itertools.count()
    lock = threading.Lock()

    def script(body: dict) -> Reply:
        with lock:
            n = next(calls)
        if n == 40:  # one 429 for one consumer; the provider wants a 3 s pause from everyone
            return Reply(429, {"retry-after": "3"}, b'{"errors": [{"message": "slow down"}]}')
        return Reply(202, delay=0.02)

    sendgrid.stub.script = script
    start(consumers, conn, 3, EMAIL_BATCH_SIZE="20")
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(400)]
    wait_until(lambda: counts(conn)["archived"] == len(ids), 120, "every signup delivered")

    received = list(sendgrid.stub.received)
    (refused,) = [r for r in received if r.status == 429]
    during = [r for r in received if refused.at + 0.6 < r.at < refused.at + 2.9]
    after = [r for r in received if r.at >= refused.at + 2.9]
    assert during == [], f"{len(during)} requests while the provider asked everyone to wait"
    assert after, "sending resumed after the Retry-After"
    assert {r.message_id for r in sendgrid.stub.accepted()} == set(ids)
    shared = conn.execute("SELECT blocked_until FROM jobs.rate_limits").fetchall()
    assert [r["blocked_until"] is not None for r in shared] == [True]


def test_consumers_together_stay_within_the_shared_rate_limit(
    conn: psycopg.Connection, consumers: Consumers, sendgrid: StubServer
) -> None:
    rate, total = 40, 480
    start(consumers, conn, 3, SENDGRID_RATE_LIMIT=str(rate), EMAIL_BATCH_SIZE="20")
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(total)]
    wait_until(lambda: counts(conn)["archived"] == total, 120, "every signup delivered")
    times = [r.at for r in sendgrid.stub.accepted()]
    assert len(times) == total and {r.message_id for r in sendgrid.stub.accepted()} == set(ids)
    window = 5.0
    assert max_in_window(times, window) <= rate * window * 1.05
    took = max(times) - min(times)
    assert took >= (total - rate * window * 0.05) / rate, "the limit is for all together"
    assert took <= total / rate * 1.6, "and they use it: not each a third of it"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=90
    )


def test_a_paused_queue_sends_nothing_and_resumes_in_order(
    conn: psycopg.Connection,
    consumers: Consumers,
    sendgrid: StubServer,
    email_env: dict[str, str],
) -> None:
    start(consumers, conn, 2)
    paused = cli(email_env, "queue", "pause")
    assert paused.returncode == 0, paused.stderr
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(30)]
    time.sleep(3)
    assert sendgrid.stub.received == [], "nothing leaves a paused queue"
    assert counts(conn)["live"] == 30 and counts(conn)["leased"] == 0

    status = cli(email_env, "status", "--json")
    assert status.returncode == 0, status.stderr
    (pause,) = json.loads(status.stdout)["pauses"]
    assert pause["type"] == "*" and pause["source"] == "cli"
    assert pause["paused_for_seconds"] >= 3

    resumed = cli(email_env, "queue", "resume")
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: counts(conn)["archived"] == 30, 60, "every signup delivered")
    assert {r.message_id for r in sendgrid.stub.accepted()} == set(ids)


async def set_variable(name: str, value: dict) -> None:
    async with get_client() as client:
        if await client.read_variable_by_name(name) is None:
            await client.create_variable(VariableCreate(name=name, value=value))
        else:
            await client.update_variable(VariableUpdate(name=name, value=value))


def test_the_prefect_variable_pauses_one_type_for_every_consumer(
    conn: psycopg.Connection, consumers: Consumers, sendgrid: StubServer
) -> None:
    asyncio.run(set_variable(SWITCH, {EMAIL_QUEUE: ["notification"]}))
    start(consumers, conn, 2, PAUSE_POLL_INTERVAL="0.5")
    wait_until(
        lambda: conn.execute("SELECT count(*) AS n FROM jobs.pauses").fetchone()["n"] == 1,
        30,
        "the variable mirrored into jobs.pauses",
    )
    notes = bulk_notes(conn, 5)
    _, welcome = signup(conn, "new@example.com", "New User")
    wait_until(lambda: counts(conn)["archived"] == 1, 30, "the welcome email")
    time.sleep(1.5)
    assert [r.message_id for r in sendgrid.stub.received] == [welcome]

    asyncio.run(set_variable(SWITCH, {EMAIL_QUEUE: []}))
    wait_until(lambda: counts(conn)["archived"] == 6, 30, "the notifications after resume")
    assert {r.message_id for r in sendgrid.stub.received} == {welcome, *notes}
