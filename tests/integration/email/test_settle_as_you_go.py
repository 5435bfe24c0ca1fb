"""Settle as you go: accepted emails are acked while the batch still sends, so a cancel
(or a kill) re-sends only what was not settled yet; a failing settle is retried while the
lease lasts (bounded), so a database outage shorter than the lease re-sends nothing; the
lease always outlasts a send plus its settle."""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
import pytest

from taskflow_jobs import db
from taskflow_jobs.devstack.sendgrid_stub import Reply, StubServer
from taskflow_jobs.email.worker.batch import INFRASTRUCTURE_ERRORS, RENDER_SLICE, Dispatcher
from taskflow_jobs.settings import SettingsError, load_settings
from tests.support.dispatch_helpers import sendgrid_settings, signup

TOTAL = 150


def archived(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) AS n FROM jobs.archive").fetchone()["n"]


def settle_settings(make_settings, sendgrid: StubServer, **extra):
    values = {
        **sendgrid_settings(sendgrid),
        "email_batch_size": TOTAL,
        "sendgrid_concurrency": 2,
        "email_settle_every": 10,
        "email_settle_interval": 0.2,
    }
    return make_settings(**{**values, **extra})


def test_accepted_emails_are_acked_while_the_batch_is_still_sending_and_a_cancel_resends_only_the_unsettled(  # noqa: E501
    conn: psycopg.Connection, database_url: str, sendgrid: StubServer, make_settings
) -> None:
    for i in range(TOTAL):
        signup(conn, f"user{i}@example.com", f"User {i}")
    sendgrid.stub.script = lambda body: Reply(202, delay=0.02)
    settings = settle_settings(make_settings, sendgrid)

    async def scenario() -> tuple[int, int, int]:
        async with Dispatcher(settings, database_url) as dispatcher:
            batch = asyncio.create_task(dispatcher.run_batch())
            while len(sendgrid.stub.accepted()) < TOTAL // 2:
                assert not batch.done(), "the batch ended before half was sent"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # more than the settle interval
            with db.connect(database_url) as watcher:
                acked_midway = archived(watcher)
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
        accepted = {r.message_id for r in sendgrid.stub.accepted()}
        return acked_midway, len(accepted), archived(conn)

    acked_midway, accepted, acked = asyncio.run(scenario())
    assert acked_midway >= TOTAL // 2 - 2 * RENDER_SLICE, "acked while the batch still sends"
    assert acked < TOTAL, "the cancel landed mid-batch"
    # what a re-send after the cancel would send twice: accepted but never acked
    unsettled_accepted = accepted - acked
    assert unsettled_accepted <= 2 * RENDER_SLICE, (accepted, acked)
    left = conn.execute("SELECT count(*) AS n, max(attempt) AS a FROM jobs.messages").fetchone()
    assert left["n"] == TOTAL - acked, "the rest is back in the queue"
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM jobs.messages WHERE claim_token IS NOT NULL"
        ).fetchone()["n"]
        == 0
    ), "released, not left leased"


def test_a_database_hiccup_mid_batch_acks_every_email_once(
    conn: psycopg.Connection, database_url: str, sendgrid: StubServer, make_settings
) -> None:
    """The pool's connections are killed mid-batch (as a PostgreSQL restart does): the
    dispatcher carries on with fresh connections, settling each email once."""
    for i in range(60):
        signup(conn, f"user{i}@example.com", f"User {i}")
    sendgrid.stub.script = lambda body: Reply(202, delay=0.01)
    settings = settle_settings(make_settings, sendgrid, email_batch_size=60)

    async def scenario() -> None:
        async with Dispatcher(settings, database_url) as dispatcher:
            batch = asyncio.create_task(dispatcher.run_batch())
            while len(sendgrid.stub.accepted()) < 20:
                await asyncio.sleep(0.005)
            with db.connect(database_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = '' AND datname = current_database()"
                    " AND pid <> pg_backend_pid() AND pid <> %s",
                    (conn.info.backend_pid,),
                )
            report = await batch
            assert report.summary()["sent"] == 60

    asyncio.run(scenario())
    assert archived(conn) == 60
    sent = [r.message_id for r in sendgrid.stub.accepted()]
    assert len(sent) == len(set(sent)) == 60, "no email sent twice"


def test_a_settle_that_keeps_failing_gives_up_after_its_attempts(
    caplog: pytest.LogCaptureFixture,
    conn: psycopg.Connection,
    database_url: str,
    pg_admin_url: str,
    sendgrid: StubServer,
    make_settings,
) -> None:
    for i in range(5):
        signup(conn, f"user{i}@example.com", f"User {i}")
    name = conn.execute("SELECT current_database() AS d").fetchone()["d"]
    conn.close()
    sendgrid.stub.script = lambda body: Reply(202, delay=0.3)
    settings = settle_settings(
        make_settings, sendgrid, email_settle_attempts=2,
        email_visibility_timeout=8, email_settle_margin=1,
    )  # fmt: skip

    async def scenario() -> float:
        async with Dispatcher(settings, database_url) as dispatcher:
            batch = asyncio.create_task(dispatcher.run_batch())
            while not sendgrid.stub.received:
                await asyncio.sleep(0.005)
            with db.connect(pg_admin_url, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
            started = time.monotonic()
            try:
                with pytest.raises(INFRASTRUCTURE_ERRORS):
                    await asyncio.wait_for(batch, 120)
                return time.monotonic() - started
            finally:
                with db.connect(pg_admin_url, autocommit=True) as admin:
                    admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

    took = asyncio.run(scenario())
    # settles retried until the 8 s lease is about to end (each try fails at once: no
    # pooled connection within 0.1 s, and a connection of its own is refused), then one
    # release, which fails as fast
    assert 5 < took < 30, f"gave up after {took:.1f}s"
    assert "attempt 1, retrying in" in caplog.text, "the floor of EMAIL_SETTLE_ATTEMPTS"


def _refuse_connections(admin_url: str, name: str, refuse: bool) -> None:
    with db.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(not refuse).lower()}')
        if refuse:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_a_database_outage_shorter_than_the_lease_re_sends_nothing(
    caplog: pytest.LogCaptureFixture,
    conn: psycopg.Connection,
    database_url: str,
    pg_admin_url: str,
    sendgrid: StubServer,
    make_settings,
) -> None:
    """PostgreSQL refuses connections for 16 s while a batch sends (a failover): longer
    than the pool waits for a connection (15 s), shorter than the lease (40 s). The
    settles of the emails accepted meanwhile fail, are retried, and commit once the
    database is back. When a settle gave up after EMAIL_SETTLE_ATTEMPTS (1 here) whatever
    the lease, those emails were released and every one of them was sent a second time."""
    caplog.set_level(logging.INFO, "taskflow_jobs")
    total = 30
    for i in range(total):
        signup(conn, f"user{i}@example.com", f"User {i}")
    name = conn.execute("SELECT current_database() AS d").fetchone()["d"]
    conn.close()
    sendgrid.stub.script = lambda body: Reply(202, delay=0.05)
    settings = settle_settings(
        make_settings, sendgrid, email_batch_size=total, email_settle_attempts=1,
        email_settle_every=5, sendgrid_concurrency=1, email_visibility_timeout=40,
    )  # fmt: skip

    async def scenario() -> None:
        async with Dispatcher(settings, database_url) as dispatcher:
            batch = asyncio.create_task(dispatcher.run_batch())
            while len(sendgrid.stub.accepted()) < 5:
                await asyncio.sleep(0.005)
            _refuse_connections(pg_admin_url, name, True)
            try:
                await asyncio.sleep(16)
                assert not batch.done(), "the batch waits for its settles"
            finally:
                _refuse_connections(pg_admin_url, name, False)
            report = await asyncio.wait_for(batch, 60)
            assert report.summary()["sent"] == total
            # anything released or left leased would be claimed (and sent) again here
            await dispatcher.run_batch()

    asyncio.run(scenario())
    sent = [r.message_id for r in sendgrid.stub.accepted()]
    assert len(sent) == total and len(set(sent)) == total, "each email sent once"
    with db.connect(database_url) as check:
        assert archived(check) == total
    assert "until the lease ends" in caplog.text and "at attempt" in caplog.text


def test_a_lease_shorter_than_a_send_and_its_settle_is_a_configuration_error() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(
            email_provider="smtp",
            smtp_timeout=30,
            email_visibility_timeout=20,
            email_settle_margin=5,
        )
    message = str(error.value)
    assert "EMAIL_VISIBILITY_TIMEOUT" in message and "SMTP_TIMEOUT" in message
    assert "EMAIL_SETTLE_MARGIN" in message
    with pytest.raises(SettingsError, match="SENDGRID_TIMEOUT"):
        load_settings(email_provider="sendgrid", sendgrid_timeout=60, email_visibility_timeout=60)
    assert load_settings(email_provider="console", email_visibility_timeout=6)


def test_an_email_accepted_next_to_a_hanging_send_is_acked_at_once(
    conn: psycopg.Connection, database_url: str, sendgrid: StubServer, make_settings
) -> None:
    """Results reach the settler one by one, not when their slice is done: with the
    default interval (0, group commit) nine emails accepted in the same slice as a send
    that hangs are acked while it hangs, so a kill then re-sends only the hanging one."""
    for i in range(10):
        signup(conn, f"user{i}@example.com", f"User {i}")

    def script(body: dict) -> Reply:
        hangs = body["personalizations"][0]["to"][0]["email"] == "user0@example.com"
        return Reply(202, delay=4 if hangs else 0)

    sendgrid.stub.script = script
    settings = settle_settings(
        make_settings, sendgrid, email_settle_every=50, email_settle_interval=0,
        sendgrid_concurrency=4, sendgrid_timeout=10,
    )  # fmt: skip
    assert len(range(10)) <= RENDER_SLICE, "one slice"

    async def scenario() -> tuple[int, int]:
        async with Dispatcher(settings, database_url) as dispatcher:
            batch = asyncio.create_task(dispatcher.run_batch())
            while len(sendgrid.stub.accepted()) < 10:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.5)
            assert not batch.done(), "the hanging send is still open"
            with db.connect(database_url) as watcher:
                acked_while_hanging = archived(watcher)
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
        return acked_while_hanging, archived(conn)

    acked_while_hanging, acked = asyncio.run(scenario())
    assert acked_while_hanging == 9
    assert acked == 9
    left = conn.execute("SELECT payload->>'email' AS email FROM jobs.messages").fetchall()
    assert [r["email"] for r in left] == ["user0@example.com"], "only the hanging one is back"


def test_the_settle_line_replaces_a_connection_the_server_closed(
    database_url: str, conn: psycopg.Connection
) -> None:
    """Acks go over the line's own connection on the event loop; after a restart or an
    administrator's terminate, the next settle notices and reconnects instead of failing."""
    from taskflow_jobs.email.outcomes import Action, Outcome
    from taskflow_jobs.email.worker.settle import SettleLine
    from taskflow_jobs.jobs import queue
    from taskflow_jobs.settings import EMAIL_QUEUE

    first = queue.send(conn, EMAIL_QUEUE, {"type": "welcome_email"})
    second = queue.send(conn, EMAIL_QUEUE, {"type": "welcome_email"})
    batch = queue.claim(conn, EMAIL_QUEUE, 2, 60)

    async def unused(requests):  # type: ignore[no-untyped-def]
        raise AssertionError("acks alone go on the event loop")

    async def scenario() -> tuple[int, int]:
        line = SettleLine(unused, database_url)
        try:
            sent = [Outcome(first, "welcome_email", 1, Action.SENT)]
            assert await line.settle(batch.token, sent, None) == sent
            assert line._conn is not None
            pid = line._conn.info.backend_pid
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                await asyncio.sleep(0.05)
            sent = [Outcome(second, "welcome_email", 1, Action.SENT)]
            assert await line.settle(batch.token, sent, None) == sent
            assert line._conn is not None
            return pid, line._conn.info.backend_pid
        finally:
            await line.aclose()

    before, after = asyncio.run(scenario())
    assert after != before, "a new connection"
    assert queue.message_state(conn, first)["state"] == "archived"  # type: ignore[index]
    assert queue.message_state(conn, second)["state"] == "archived"  # type: ignore[index]
