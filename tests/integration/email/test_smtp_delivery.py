"""Delivery through a real SMTP server (aiosmtpd, STARTTLS + AUTH required)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import psycopg
import pytest

from taskflow_jobs.email.providers import ProviderUnavailable
from taskflow_jobs.email.worker.batch import Dispatcher
from taskflow_jobs.jobs import queue
from taskflow_jobs.net import free_port
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.support.dispatch_helpers import drain, signup, state
from tests.support.email_servers import SMTP_PASSWORD, SmtpServer

EVIL_NAME = "<script>alert(1)</script>\r\nBcc: victim@evil.example"


def test_welcome_and_task_assigned_are_delivered_over_one_connection(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    ann_id, welcome_ann = signup(conn, "ann@example.com", "Ann Lee")
    bob_id, welcome_bob = signup(conn, "bob@example.com", EVIL_NAME)
    task = conn.execute(
        "INSERT INTO public.tasks (title, created_by, assignee_id)"
        " VALUES ('Ship <b>v2</b> & celebrate', %s, %s) RETURNING id",
        (ann_id, bob_id),
    ).fetchone()
    assigned = conn.execute(
        "SELECT id FROM jobs.messages WHERE payload ->> 'type' = 'task_assigned'"
    ).fetchone()["id"]

    stats = drain(make_settings(**smtp_server.settings(), email_concurrency=1))

    assert stats.summary()["sent"] == 3
    recorder = smtp_server.recorder
    assert recorder.connections() == 1, "one batch must reuse one SMTP connection"
    assert recorder.logins == ["mailer"]
    for message_id in (welcome_ann, welcome_bob, assigned):
        assert state(conn, message_id)["state"] == "archived"

    (ann,) = recorder.to("ann@example.com")
    assert ann["Subject"] == "Welcome to TaskFlow, Ann Lee!"
    assert ann["From"].addresses[0].addr_spec == "noreply@example.com"
    assert ann["X-TaskFlow-Message-Id"] == str(welcome_ann)
    text = ann.get_body(("plain",)).get_content()
    html = ann.get_body(("html",)).get_content()
    assert "Hi Ann Lee," in text and "ann@example.com" in text
    assert "Hi Ann Lee," in html

    bob_messages = recorder.to("bob@example.com")
    assert len(bob_messages) == 2
    # (a long subject is folded onto its own line; unfolding leaves a leading space)
    welcome_bob_msg = next(m for m in bob_messages if m["Subject"].strip().startswith("Welcome"))
    # the name's CR/LF did not start a header; the <script> is text, not markup
    assert welcome_bob_msg["Bcc"] is None
    assert all("victim@evil.example" not in str(a) for a in welcome_bob_msg["To"].addresses[1:])
    assert len(welcome_bob_msg["To"].addresses) == 1
    # the envelope too: every message went to exactly its one recipient, from EMAIL_FROM
    assert sorted(recorder.envelopes) == sorted(
        [
            ("noreply@example.com", ["ann@example.com"]),
            ("noreply@example.com", ["bob@example.com"]),
            ("noreply@example.com", ["bob@example.com"]),
        ]
    )
    assert "\n" not in welcome_bob_msg["Subject"]
    html = welcome_bob_msg.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    task_msg = next(m for m in bob_messages if m["Subject"].strip().startswith("New task"))
    assert task_msg["Subject"].strip() == "New task assigned to you: Ship <b>v2</b> & celebrate"
    task_text = task_msg.get_body(("plain",)).get_content()
    task_html = task_msg.get_body(("html",)).get_content()
    assert "Ann Lee assigned a task to you" in task_text
    assert f"task #{task['id']}" in task_text
    assert "Ship &lt;b&gt;v2&lt;/b&gt; &amp; celebrate" in task_html


def test_smtp_4xx_retries_later_and_then_delivers(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings, clock
) -> None:
    _, message_id = signup(conn, "busy@example.com", "Busy")
    smtp_server.recorder.replies["busy@example.com"] = "451 4.3.0 mailbox busy, try later"
    settings = make_settings(**smtp_server.settings())

    assert drain(settings, clock).summary()["retried"] == 1
    pending = state(conn, message_id)
    assert pending["state"] == "pending" and pending["claim_token"] is None
    assert pending["attempt"] == 1
    assert "451" in pending["errors"][-1]["error"]
    delay = (pending["visible_at"] - clock.now).total_seconds()
    assert 0 <= delay <= settings.email_backoff_base

    del smtp_server.recorder.replies["busy@example.com"]
    clock.now = pending["visible_at"] - timedelta(milliseconds=1)
    assert drain(settings, clock).summary()["sent"] == 0, "retried before its time"
    clock.now = pending["visible_at"]
    assert drain(settings, clock).summary()["sent"] == 1
    done = state(conn, message_id)
    assert done["state"] == "archived"
    assert done["attempt"] == 2
    assert len(done["errors"]) == 1, "the failed attempt stays in the history"


def test_smtp_5xx_dead_letters_with_the_reply(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    _, message_id = signup(conn, "gone@example.com", "Gone")
    smtp_server.recorder.replies["gone@example.com"] = "550 5.1.1 no such mailbox"

    assert drain(make_settings(**smtp_server.settings())).summary()["dead-lettered"] == 1
    dead = state(conn, message_id)
    assert dead["state"] == "dead"
    assert "550" in dead["reason"] and "no such mailbox" in dead["reason"]
    assert dead["errors"][-1]["error"] == dead["reason"]


def _run_one_batch(settings) -> None:
    async def go() -> None:
        dispatcher = Dispatcher(settings, settings.database_url)
        await dispatcher.open()
        try:
            await dispatcher.run_batch()
        finally:
            await dispatcher.close()

    asyncio.run(go())


def test_unreachable_smtp_server_releases_the_batch_without_using_an_attempt(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    _, message_id = signup(conn, "ann@example.com", "Ann")
    settings = make_settings(**{**smtp_server.settings(), "smtp_port": free_port()})

    with pytest.raises(ProviderUnavailable, match="cannot connect to SMTP server"):
        _run_one_batch(settings)
    released = state(conn, message_id)
    assert released["state"] == "pending" and released["claim_token"] is None
    assert released["attempt"] == 0 and released["errors"] == []


def test_refused_login_is_a_provider_failure_that_never_shows_the_password(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    _, message_id = signup(conn, "ann@example.com", "Ann")
    settings = make_settings(**{**smtp_server.settings(), "smtp_password": "wrong-password"})

    with pytest.raises(ProviderUnavailable) as caught:
        _run_one_batch(settings)
    assert "SMTP_USERNAME" in str(caught.value)
    assert "wrong-password" not in str(caught.value) and SMTP_PASSWORD not in str(caught.value)
    assert state(conn, message_id)["attempt"] == 0
    assert queue.metrics(conn, EMAIL_QUEUE)[0].visible == 1


def test_a_large_batch_opens_a_fresh_connection_every_hundred_emails(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    for i in range(150):
        signup(conn, f"user{i}@example.com", f"User {i}")
    settings = make_settings(**smtp_server.settings(), email_batch_size=500, email_concurrency=1)

    assert drain(settings).summary()["sent"] == 150
    assert smtp_server.recorder.connections() == 2


def test_a_hung_smtp_server_times_out_and_the_email_is_retried_later(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    """DATA never answered within SMTP_TIMEOUT: the send gives up after the timeout, the
    email is retried later (an attempt used, nothing lost), the batch does not hang."""
    _, message_id = signup(conn, "slow@example.com", "Slow")
    smtp_server.recorder.data_delay = 4.0
    settings = make_settings(**{**smtp_server.settings(), "smtp_timeout": 1.0})
    started = time.monotonic()
    summary = drain(settings).summary()
    took = time.monotonic() - started
    assert summary["retried"] == 1 and summary["sent"] == 0
    assert took < 3.5, f"the batch waited {took:.1f}s for a hung server"
    pending = state(conn, message_id)
    assert pending["state"] == "pending" and pending["claim_token"] is None
    assert "timed out" in pending["errors"][-1]["error"].lower()


def test_a_connection_dropped_mid_batch_retries_only_that_email(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings, clock
) -> None:
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(8)]
    recorder = smtp_server.recorder
    recorder.drop_after = 3
    settings = make_settings(**smtp_server.settings(), email_concurrency=1)

    summary = drain(settings, clock).summary()
    assert summary["sent"] == 7 and summary["retried"] == 1
    assert recorder.connections() == 2, "the rest of the batch went on a fresh connection"
    (dropped,) = [i for i in ids if state(conn, i)["state"] == "pending"]
    assert "connection lost" in state(conn, dropped)["errors"][-1]["error"]

    clock.now = state(conn, dropped)["visible_at"]
    assert drain(settings, clock).summary()["sent"] == 1
    delivered = [rcpts[0] for _, rcpts in recorder.envelopes]
    assert sorted(delivered) == sorted(f"user{i}@example.com" for i in range(8))
    assert len(set(delivered)) == 8, "each email reached the server once"
