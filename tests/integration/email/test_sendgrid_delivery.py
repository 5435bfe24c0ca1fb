"""Delivery through a SendGrid-compatible HTTP server scripted to succeed, refuse, throttle,
fail or hang."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import psycopg
import pytest

from taskflow_jobs.devstack.sendgrid_stub import Reply, StubServer, errors
from taskflow_jobs.email.providers import ProviderUnavailable
from taskflow_jobs.email.worker.batch import Dispatcher
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.support.dispatch_helpers import API_KEY, drain, sendgrid_settings, signup, state


def test_accepted_email_has_the_v3_shape(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings
) -> None:
    _, message_id = signup(conn, "ann@example.com", "<b>Ann</b>")

    assert drain(make_settings(**sendgrid_settings(sendgrid))).summary()["sent"] == 1
    (request,) = sendgrid.stub.accepted()
    body = request.body
    assert body["personalizations"] == [
        {"to": [{"email": "ann@example.com", "name": "<b>Ann</b>"}]}
    ]
    assert body["from"] == {"email": "noreply@example.com", "name": "TaskFlow"}
    assert body["subject"] == "Welcome to TaskFlow, <b>Ann</b>!"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "Hi <b>Ann</b>," in body["content"][0]["value"]
    assert "Hi &lt;b&gt;Ann&lt;/b&gt;," in body["content"][1]["value"]
    assert body["custom_args"] == {"taskflow_message_id": str(message_id), "type": "welcome_email"}
    assert state(conn, message_id)["state"] == "archived"


def test_400_dead_letters_with_sendgrids_reason(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings
) -> None:
    _, message_id = signup(conn, "ann@example.com", "Ann")
    sendgrid.stub.script = lambda body: errors(
        "The from email does not contain a valid address.", 400
    )

    assert drain(make_settings(**sendgrid_settings(sendgrid))).summary()["dead-lettered"] == 1
    dead = state(conn, message_id)
    assert dead["state"] == "dead"
    assert dead["reason"] == "SendGrid 400: The from email does not contain a valid address."


def test_429_waits_at_least_retry_after(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings, clock
) -> None:
    _, message_id = signup(conn, "ann@example.com", "Ann")
    sendgrid.stub.script = lambda body: Reply(429, {"Retry-After": "120"})
    settings = make_settings(
        **sendgrid_settings(sendgrid), email_backoff_base=1.0, email_backoff_cap=600.0
    )

    assert drain(settings, clock).summary()["retried"] == 1
    pending = state(conn, message_id)
    assert "429" in pending["errors"][-1]["error"]
    assert (pending["visible_at"] - clock.now) >= timedelta(seconds=120)


def test_500_then_202_delivers_on_the_second_attempt_keeping_the_history(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings, clock
) -> None:
    _, message_id = signup(conn, "ann@example.com", "Ann")
    answers = itertools.chain([errors("internal error", 500)], itertools.repeat(Reply(202)))
    sendgrid.stub.script = lambda body: next(answers)
    settings = make_settings(**sendgrid_settings(sendgrid))

    assert drain(settings, clock).summary()["retried"] == 1
    pending = state(conn, message_id)
    clock.now = pending["visible_at"] - timedelta(milliseconds=1)
    assert drain(settings, clock).summary()["sent"] == 0, "retried before its time"
    assert len(sendgrid.stub.received) == 1
    clock.now = pending["visible_at"]
    assert drain(settings, clock).summary()["sent"] == 1

    done = state(conn, message_id)
    assert done["state"] == "archived" and done["attempt"] == 2
    assert [e["attempt"] for e in done["errors"]] == [1]
    assert done["errors"][0]["error"] == "SendGrid 500: internal error"


def test_a_hanging_api_is_a_transient_timeout(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings, clock
) -> None:
    _, message_id = signup(conn, "ann@example.com", "Ann")
    sendgrid.stub.script = lambda body: Reply(202, delay=30)
    settings = make_settings(**sendgrid_settings(sendgrid, sendgrid_timeout=0.3))

    assert drain(settings, clock).summary()["retried"] == 1
    assert "did not answer within 0.3s" in state(conn, message_id)["errors"][-1]["error"]


def test_exhausted_attempts_dead_letter_with_every_error(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings, clock
) -> None:
    _, message_id = signup(conn, "ann@example.com", "Ann")
    sendgrid.stub.script = lambda body: errors("service unavailable", 503)
    settings = make_settings(**sendgrid_settings(sendgrid), email_max_attempts=3)

    for _ in range(3):
        drain(settings, clock)
        clock.advance(settings.email_backoff_cap + 1)
    dead = state(conn, message_id)
    assert dead["state"] == "dead"
    assert (
        dead["reason"] == "attempts exhausted (3/3); last error: SendGrid 503: service unavailable"
    )
    assert [e["attempt"] for e in dead["errors"]] == [1, 2, 3]
    assert len(sendgrid.stub.received) == 3


def test_refused_api_key_releases_the_batch_and_never_logs_the_key(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings
) -> None:
    _, message_id = signup(conn, "ann@example.com", "Ann")
    settings = make_settings(**sendgrid_settings(sendgrid, sendgrid_api_key="SG.wrong-key"))

    async def one_batch() -> None:
        async with Dispatcher(settings, settings.database_url) as dispatcher:
            await dispatcher.run_batch()

    with pytest.raises(ProviderUnavailable, match="SENDGRID_API_KEY") as caught:
        asyncio.run(one_batch())
    assert "SG.wrong-key" not in str(caught.value) and API_KEY not in str(caught.value)
    released = state(conn, message_id)
    assert released["state"] == "pending" and released["attempt"] == 0
    assert queue.metrics(conn, EMAIL_QUEUE)[0].visible == 1


def test_concurrency_limit_holds_across_concurrent_batches(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings
) -> None:
    for i in range(40):
        signup(conn, f"user{i}@example.com", f"User {i}")
    sendgrid.stub.script = lambda body: Reply(202, delay=0.05)
    settings = make_settings(
        **sendgrid_settings(sendgrid, sendgrid_concurrency=3),
        email_batch_size=10,
        email_concurrency=4,
    )
    stats = drain(settings)
    assert stats.summary()["sent"] == 40
    assert stats.batches >= 4
    assert sendgrid.stub.peak_in_flight == 3, "at most SENDGRID_CONCURRENCY requests at once"
