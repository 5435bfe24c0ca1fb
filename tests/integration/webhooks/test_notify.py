"""POST /api/notify: validated, committed, idempotent by key or by the sender's delivery id."""

from __future__ import annotations

import time
import uuid

import psycopg

from tests.support.receiver import Receiver, count

DATA = {"to": "ada@example.com", "subject": "Build finished", "body": "All green."}


def note(**extra: object) -> dict:
    return {"type": "notification", "data": dict(DATA), **extra}


def post(receiver: Receiver, body: dict, headers: dict | None = None, shift: int = 0) -> dict:
    # each call is signed afresh (a shifted timestamp keeps equal bodies from being replays)
    response = receiver.post(
        "/api/notify", body, headers=headers, timestamp=int(time.time()) - shift
    )
    assert response.status_code == 202, response.text
    return response.json()


def jobs(conn: psycopg.Connection) -> int:
    return count(conn, "SELECT count(*) FROM jobs.messages")


def test_every_message_type_is_enqueued(receiver: Receiver, conn: psycopg.Connection) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    bodies = [
        note(),
        {"type": "welcome_email", "data": {"user_id": str(user), "email": "u@example.com"}},
        {
            "type": "task_assigned",
            "data": {"task_id": 7, "task_title": "Ship", "assignee_id": str(other)},
        },
    ]
    answers = [post(receiver, b) for b in bodies]
    assert [a["type"] for a in answers] == ["notification", "welcome_email", "task_assigned"]
    rows = conn.execute("SELECT id, payload FROM jobs.messages ORDER BY id").fetchall()
    assert [r["id"] for r in rows] == [a["job_id"] for a in answers]
    assert rows[2]["payload"] == {
        "type": "task_assigned",
        "task_id": 7,
        "task_title": "Ship",
        "assignee_id": str(other),
    }


def test_idempotency_key_in_body_returns_the_same_job(
    receiver: Receiver, conn: psycopg.Connection
) -> None:
    first = post(receiver, note(idempotency_key="build-42"))
    again = post(receiver, note(idempotency_key="build-42"), shift=1)
    assert again == {**first, "duplicate": True}
    other = post(receiver, note(idempotency_key="build-43"))
    assert other["job_id"] != first["job_id"]
    assert jobs(conn) == 2
    key = conn.execute("SELECT key FROM jobs.idempotency_keys ORDER BY key").fetchall()
    assert [k["key"] for k in key] == ["notify:build-42", "notify:build-43"]


def test_delivery_id_headers_make_retries_idempotent(
    receiver: Receiver, conn: psycopg.Connection
) -> None:
    for number, header in enumerate(("Idempotency-Key", "webhook-id", "X-Delivery-Id")):
        value = f"msg_{header}_1"
        first = post(receiver, note(), {header: value}, shift=2 * number)
        again = post(receiver, note(), {header: value}, shift=2 * number + 1)
        assert again["job_id"] == first["job_id"] and again["duplicate"] is True
    assert jobs(conn) == 3


def test_reusing_a_key_for_a_different_request_is_409(
    receiver: Receiver, conn: psycopg.Connection
) -> None:
    post(receiver, note(idempotency_key="k1"))
    changed = note(idempotency_key="k1")
    changed["data"]["subject"] = "Something else"
    response = receiver.post("/api/notify", changed)
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency key reused"
    assert jobs(conn) == 1


def test_key_still_holds_after_the_job_was_sent(
    receiver: Receiver, conn: psycopg.Connection
) -> None:
    first = post(receiver, note(idempotency_key="sent-already"))
    conn.execute(  # what the dispatcher's ack does: the job moves to the archive
        "WITH m AS (DELETE FROM jobs.messages WHERE id = %s RETURNING *)"
        " INSERT INTO jobs.archive (id, queue, payload, enqueued_at, finalized_at, attempt,"
        " errors, idempotency_key, redrive_count)"
        " SELECT id, queue, payload, enqueued_at, now(), 1, errors, idempotency_key,"
        " redrive_count FROM m",
        (first["job_id"],),
    )
    again = post(receiver, note(idempotency_key="sent-already"), shift=1)
    assert again["job_id"] == first["job_id"] and again["duplicate"] is True
    assert jobs(conn) == 0


def test_welcome_email_uses_the_triggers_key(receiver: Receiver, conn: psycopg.Connection) -> None:
    """A welcome email is sent once per user, whichever path (trigger, webhook, notify)."""
    user = conn.execute(
        "INSERT INTO auth.users (email) VALUES ('w@example.com') RETURNING id"
    ).fetchone()["id"]
    [trigger_job] = conn.execute("SELECT id FROM jobs.messages").fetchall()
    answer = post(
        receiver,
        {"type": "welcome_email", "data": {"user_id": str(user), "email": "w@example.com"}},
    )
    assert answer["job_id"] == trigger_job["id"] and answer["duplicate"] is True
    assert jobs(conn) == 1
