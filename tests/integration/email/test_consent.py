"""Consent at dispatch time, on real PostgreSQL and real SMTP / SendGrid stand-ins:
opt-outs and suppressed addresses are finalised as skipped with their reason, hard bounces
suppress the address, and every email that can be turned off carries List-Unsubscribe."""

from __future__ import annotations

import json
import re
from typing import Any
from uuid import UUID

import psycopg

from taskflow_jobs.devstack.sendgrid_stub import Reply, StubServer
from taskflow_jobs.email import consent
from taskflow_jobs.email.outcomes import Action
from taskflow_jobs.email.unsubscribe import signing_key, verify_token
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.support.dispatch_helpers import drain, sendgrid_settings, signup
from tests.support.email_servers import SmtpServer

SECRET = "consent-test-webhook-secret"
TOKEN_IN_URL = re.compile(r"/unsubscribe/([A-Za-z0-9_-]{44})")


def assign(conn: psycopg.Connection, title: str, assignee: str, by: str | None = None) -> int:
    conn.execute(
        "INSERT INTO public.tasks (title, created_by, assignee_id) VALUES (%s, %s, %s)",
        (title, by, assignee),
    )
    row = conn.execute(
        "SELECT max(id) AS id FROM jobs.messages WHERE payload ->> 'type' = 'task_assigned'"
    ).fetchone()
    return row["id"]


def notify(conn: psycopg.Connection, to: str) -> int:
    payload = {"type": "notification", "to": to, "subject": "Build", "body": "All green."}
    return queue.send(conn, EMAIL_QUEUE, payload)


def opt_out(conn: psycopg.Connection, user_id: str, kind: str) -> None:
    conn.execute(
        "INSERT INTO public.notification_preferences (user_id, type, enabled)"
        " VALUES (%s, %s, false)",
        (user_id, kind),
    )


def where(conn: psycopg.Connection, message_id: int) -> dict[str, Any]:
    row = queue.message_state(conn, message_id)
    assert row is not None
    return row


def test_opted_out_and_suppressed_are_skipped_with_reasons(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    ann, welcome_ann = signup(conn, "ann@example.com", "Ann")
    bob, welcome_bob = signup(conn, "bob@example.com", "Bob")
    _, welcome_cy = signup(conn, "cy@example.com", "Cy")
    opt_out(conn, bob, "task_assigned")
    opt_out(conn, ann, "notification")
    with conn.transaction():
        consent.suppress(conn, {"CY@Example.COM": "manual"}, "cli")  # any case matches
    to_bob = assign(conn, "Write docs", bob, ann)
    to_ann = assign(conn, "Review docs", ann, bob)
    note_ann = notify(conn, "ANN@example.com")  # her user is found by address
    note_bob = notify(conn, "bob@example.com")

    stats = drain(make_settings(**smtp_server.settings(), webhook_secret=SECRET))

    summary = stats.summary()
    assert summary["sent"] == 4 and summary["skipped"] == 3, summary
    for sent in (welcome_ann, welcome_bob, to_ann, note_bob):
        assert where(conn, sent)["state"] == "archived"
    skipped = {m: where(conn, m) for m in (to_bob, note_ann, welcome_cy)}
    assert {s["state"] for s in skipped.values()} == {"skipped"}
    assert skipped[to_bob]["reason"] == "opted out: the recipient turned off task_assigned emails"
    assert skipped[note_ann]["reason"] == "opted out: the recipient turned off notification emails"
    assert skipped[welcome_cy]["reason"] == "suppressed: manual (via cli)"
    # nothing reached the server for them
    recorder = smtp_server.recorder
    assert recorder.to("cy@example.com") == []
    assert [m["Subject"].strip() for m in recorder.to("bob@example.com")] != []
    assert not any("Write docs" in m["Subject"] for m in recorder.messages)
    # the run's artifact rows name each skipped message and its reason
    rows = {r["message"]: r for r in stats.table() if r["outcome"] == "skipped"}
    assert rows["total"]["count"] == 3
    assert rows[str(to_bob)]["error"].startswith("opted out")
    # weekly totals do not count skipped messages as sent
    sent = conn.execute(
        "SELECT count(*) AS n FROM jobs.archive WHERE skipped_reason IS NULL"
    ).fetchone()
    assert sent["n"] == 4
    # status shows them by type and why
    counts = {
        (r["type"], r["why"]): r["count"]
        for r in conn.execute("""
        SELECT payload ->> 'type' AS type, split_part(skipped_reason, ':', 1) AS why,
               count(*) AS count FROM jobs.archive WHERE skipped_reason IS NOT NULL GROUP BY 1, 2
    """)
    }
    assert counts == {
        ("task_assigned", "opted out"): 1,
        ("notification", "opted out"): 1,
        ("welcome_email", "suppressed"): 1,
    }


def test_emails_that_can_be_turned_off_carry_one_click_unsubscribe(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    ann, _ = signup(conn, "ann@example.com", "Ann")
    bob, _ = signup(conn, "bob@example.com", "Bob")
    assign(conn, "Ship", bob, ann)
    notify(conn, "ann@example.com")
    notify(conn, "stranger@example.com")  # no user: nothing to turn off
    settings = make_settings(
        **smtp_server.settings(),
        webhook_secret=SECRET,
        public_base_url="https://jobs.example.com/",
        unsubscribe_mailto="unsubscribe@example.com",
    )
    drain(settings)
    key = signing_key(settings)
    assert key is not None
    recorder = smtp_server.recorder
    welcome = next(m for m in recorder.to("bob@example.com") if "Welcome" in m["Subject"])
    assert welcome["List-Unsubscribe"] is None, "welcome_email is transactional"
    (task,) = [m for m in recorder.to("bob@example.com") if "task" in m["Subject"]]
    header = task["List-Unsubscribe"]
    assert task["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [part.strip(" <>") for part in header.split(",")]
    assert https.startswith("https://jobs.example.com/unsubscribe/")
    assert mailto.startswith("mailto:unsubscribe@example.com?subject=unsubscribe%20")
    token = TOKEN_IN_URL.search(https).group(1)
    assert verify_token(key, token) == (UUID(bob), "task_assigned")
    # the visible link, in both parts
    assert https in task.get_body(("plain",)).get_content()
    assert https in task.get_body(("html",)).get_content()
    note = next(m for m in recorder.to("ann@example.com") if m["Subject"] == "Build")
    note_token = TOKEN_IN_URL.search(note["List-Unsubscribe"]).group(1)
    assert verify_token(key, note_token) == (UUID(ann), "notification")
    (stranger,) = recorder.to("stranger@example.com")
    assert stranger["List-Unsubscribe"] is None


def test_smtp_550_suppresses_the_address_and_the_next_job_is_skipped(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    ann, _ = signup(conn, "ann@example.com", "Ann")
    gone, first = signup(conn, "gone@example.com", "Gone")
    smtp_server.recorder.replies["gone@example.com"] = "550 5.1.1 no such mailbox"
    settings = make_settings(**smtp_server.settings())

    stats = drain(settings)

    assert where(conn, first)["state"] == "dead"
    assert stats.summary()["dead-lettered"] == 1 and stats.summary()["sent"] == 1
    (row,) = consent.suppressions(conn)
    assert (row["email"], row["reason"], row["source"]) == (
        "gone@example.com",
        "hard bounce (SMTP 550)",
        "smtp",
    )
    smtp_server.recorder.replies.clear()  # even if the server would now take it
    second = assign(conn, "Anything", gone, ann)
    again = notify(conn, "Gone@Example.com")

    stats = drain(settings)

    assert stats.summary()["skipped"] == 2 and stats.summary()["sent"] == 0
    for message in (second, again):
        state = where(conn, message)
        assert state["state"] == "skipped"
        assert state["reason"] == "suppressed: hard bounce (SMTP 550) (via smtp)"
    assert smtp_server.recorder.to("gone@example.com") == []


def test_smtp_4xx_and_other_5xx_do_not_suppress(
    conn: psycopg.Connection, smtp_server: SmtpServer, make_settings
) -> None:
    signup(conn, "busy@example.com")
    signup(conn, "policy@example.com")
    smtp_server.recorder.replies["busy@example.com"] = "451 4.3.0 try later"
    smtp_server.recorder.replies["policy@example.com"] = "554 5.7.1 policy rejection"
    drain(make_settings(**smtp_server.settings()))
    assert consent.suppressions(conn) == []


def test_sendgrid_refusing_the_address_suppresses_it(
    conn: psycopg.Connection, sendgrid: StubServer, make_settings
) -> None:
    def script(body: dict) -> Reply:
        if body["personalizations"][0]["to"][0]["email"] == "bad@example.com":
            error = {"message": "Does not contain a valid address.",
                     "field": "personalizations.0.to.0.email"}  # fmt: skip
            return Reply(400, {"content-type": "application/json"},
                         json.dumps({"errors": [error]}).encode())  # fmt: skip
        return Reply()

    sendgrid.stub.script = script
    ann, _ = signup(conn, "ann@example.com", "Ann")
    _, bad = signup(conn, "bad@example.com")
    assign(conn, "Ship", ann, ann)
    settings = make_settings(**sendgrid_settings(sendgrid), webhook_secret=SECRET)

    stats = drain(settings)

    assert where(conn, bad)["state"] == "dead"
    (row,) = consent.suppressions(conn)
    assert row["email"] == "bad@example.com" and row["source"] == "sendgrid"
    assert stats.counts[Action.SENT.value] == 2
    task = next(
        r for r in sendgrid.stub.accepted() if r.body["custom_args"]["type"] == "task_assigned"
    )
    headers = task.body["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert TOKEN_IN_URL.search(headers["List-Unsubscribe"])
    welcome = next(
        r for r in sendgrid.stub.accepted() if r.body["custom_args"]["type"] == "welcome_email"
    )
    assert "List-Unsubscribe" not in welcome.body["headers"]

    next_one = notify(conn, "bad@example.com")
    drain(settings)
    assert where(conn, next_one)["state"] == "skipped"
