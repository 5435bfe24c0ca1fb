"""The dispatch loop in listen mode (what `consume` runs): NOTIFY wakes it, delayed messages
are picked up by the polling fallback, batches stay open for a window, stop releases."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

from taskflow_jobs import db
from taskflow_jobs.devstack.sendgrid_stub import Reply, StubServer
from taskflow_jobs.email.outcomes import DispatchStats
from taskflow_jobs.email.worker.batch import Dispatcher, Ticket
from taskflow_jobs.email.worker.run import RunPlan, run_dispatch
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.support.dispatch_helpers import sendgrid_settings, signup, state


async def listen_run(dispatcher: Dispatcher, plan: RunPlan, stats: DispatchStats) -> None:
    async def run_batch(window: float, number: int, ticket: Ticket) -> Any:
        return await dispatcher.run_batch(window, stats, ticket)

    await run_dispatch(dispatcher, run_batch, plan, stats)


def test_listen_mode_sends_a_trickle_in_few_batches_woken_by_notify(
    database_url: str, sendgrid: StubServer, make_settings
) -> None:
    settings = make_settings(**sendgrid_settings(sendgrid))
    # poll_interval far above idle_timeout: without NOTIFY the run would end before polling
    plan = RunPlan(
        budget=60, concurrency=2, listen=True, idle_timeout=1.5, window=0.5, poll_interval=30
    )
    stats = DispatchStats()
    users = 20

    def trickle() -> list[int]:
        ids = []
        with db.connect(database_url, autocommit=True) as conn:
            for i in range(users):
                ids.append(signup(conn, f"user{i}@example.com", f"User {i}")[1])
                time.sleep(0.05)
        return ids

    async def scenario() -> list[int]:
        dispatcher = await Dispatcher(settings, database_url).open(listen=True)
        try:
            await asyncio.wait_for(dispatcher.listener.connected.wait(), 10)
            run = asyncio.create_task(listen_run(dispatcher, plan, stats))
            ids = await asyncio.to_thread(trickle)
            await asyncio.wait_for(run, 30)
            return ids
        finally:
            await dispatcher.close()

    ids = asyncio.run(scenario())
    assert stats.summary()["sent"] == users
    assert {r.message_id for r in sendgrid.stub.accepted()} == set(ids)
    # a batch stays open for its window: 20 messages over ~1 s need only a few task runs
    assert 1 <= stats.batches <= 6, stats.summary()


def test_polling_fallback_sends_a_delayed_message_when_it_becomes_visible(
    conn: psycopg.Connection, database_url: str, sendgrid: StubServer, make_settings
) -> None:
    settings = make_settings(**sendgrid_settings(sendgrid))
    message_id = queue.send(
        conn,
        EMAIL_QUEUE,
        {"type": "notification", "to": "a@example.com", "subject": "Later", "body": "x"},
        delay=1.0,
    )
    plan = RunPlan(
        budget=60, concurrency=1, listen=True, idle_timeout=4, window=0, poll_interval=60
    )
    stats = DispatchStats()

    async def scenario() -> None:
        dispatcher = await Dispatcher(settings, database_url).open(listen=True)
        try:
            await listen_run(dispatcher, plan, stats)
        finally:
            await dispatcher.close()

    asyncio.run(scenario())
    assert stats.summary()["sent"] == 1, "a delayed message sends no NOTIFY: polling must find it"
    assert state(conn, message_id)["state"] == "archived"


def test_stop_finishes_sends_in_flight_and_releases_the_rest(
    conn: psycopg.Connection, database_url: str, sendgrid: StubServer, make_settings
) -> None:
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(6)]
    sendgrid.stub.script = lambda body: Reply(202, delay=0.3)
    settings = make_settings(**sendgrid_settings(sendgrid, sendgrid_concurrency=1))

    async def scenario() -> DispatchStats:
        stats = DispatchStats()
        async with Dispatcher(settings, database_url) as dispatcher:
            batch = asyncio.create_task(dispatcher.run_batch(0, stats))
            while not sendgrid.stub.received:
                await asyncio.sleep(0.01)
            dispatcher.request_stop()
            await batch
        return stats

    stats = asyncio.run(scenario())
    sent = stats.summary()["sent"]
    assert sent == len(sendgrid.stub.received) >= 1, "the send in flight completes"
    assert stats.summary()["released"] == len(ids) - sent
    states = [state(conn, i) for i in ids]
    assert sum(s["state"] == "archived" for s in states) == sent
    released = [s for s in states if s["state"] == "pending"]
    assert all(s["claim_token"] is None and s["attempt"] == 0 for s in released)


def test_leased_messages_are_neither_counted_visible_nor_due(
    conn: psycopg.Connection, database_url: str, make_settings
) -> None:
    """The coordinator sizes its batches from these two: a leased message is not work."""
    settings = make_settings()
    queue.send_batch(conn, EMAIL_QUEUE, [{"type": "welcome_email"} for _ in range(5)])
    queue.claim(conn, EMAIL_QUEUE, 3, 60)

    async def scenario() -> tuple[int, float | None]:
        async with Dispatcher(settings, database_url) as dispatcher:
            return await dispatcher.visible(100), await dispatcher.next_visible_in()

    visible, due_in = asyncio.run(scenario())
    assert visible == 2
    assert due_in == 0.0  # two are claimable now
    queue.claim(conn, EMAIL_QUEUE, 2, 60)
    visible, due_in = asyncio.run(scenario())
    assert visible == 0
    assert due_in is not None and 55 < due_in <= 60, "the next lease to expire"


class _CountFails(Dispatcher):
    """Counting visible messages fails on demand: the error a PostgreSQL restart gives a
    query in flight (the batches' own queries go on working)."""

    failing = False

    async def visible(self, limit: int) -> int:
        if self.failing:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await super().visible(limit)


def test_a_failed_count_of_the_loop_lets_the_batches_in_flight_finish(
    conn: psycopg.Connection, database_url: str, sendgrid: StubServer, make_settings
) -> None:
    """The loop counts visible messages on every wake-up; when that query failed (a
    PostgreSQL restart) it used to cancel every batch in flight, and what they had sent but
    not settled yet was released and sent again. Now it starts no new batch, lets the
    running ones finish and settle, and then raises."""
    total = 30
    for i in range(total):
        signup(conn, f"user{i}@example.com", f"User {i}")
    sendgrid.stub.script = lambda body: Reply(202, delay=0.03)
    settings = make_settings(**sendgrid_settings(sendgrid, sendgrid_concurrency=2))
    plan = RunPlan(budget=60, concurrency=2, listen=True, idle_timeout=5, window=0.5)
    stats = DispatchStats()

    async def scenario() -> None:
        dispatcher = await _CountFails(settings, database_url).open()
        try:
            run = asyncio.create_task(listen_run(dispatcher, plan, stats))
            while len(sendgrid.stub.accepted()) < 3:
                await asyncio.sleep(0.005)
            dispatcher.failing = True
            dispatcher.waker.fire()  # as a NOTIFY would
            try:
                await asyncio.wait_for(run, 30)
            except psycopg.OperationalError:
                pass
            else:
                raise AssertionError("the run raises the loop's error once the batch is done")
            dispatcher.failing = False
            assert await dispatcher.visible(100) == 0, "nothing released to be sent again"
        finally:
            await dispatcher.close()

    asyncio.run(scenario())
    assert stats.summary()["sent"] == total, stats.summary()
    sent = [r.message_id for r in sendgrid.stub.accepted()]
    assert len(sent) == len(set(sent)) == total
