"""POST /api/notify with `"priority": "bulk"`: the bulk lane, for notifications only."""

from __future__ import annotations

import psycopg

from tests.support.receiver import Receiver

NOTE = {"to": "ada@example.com", "subject": "Newsletter", "body": "Hello."}


def lanes(conn: psycopg.Connection) -> list[tuple[str, int]]:
    rows = conn.execute("SELECT payload ->> 'type' AS t, priority FROM jobs.messages ORDER BY id")
    return [(r["t"], r["priority"]) for r in rows]


def test_notify_takes_a_bulk_priority_and_refuses_it_for_a_signup(
    receiver: Receiver, conn: psycopg.Connection
) -> None:
    bulk = receiver.post("/api/notify", {"type": "notification", "data": NOTE, "priority": "bulk"})
    assert bulk.status_code == 202, bulk.text
    plain = receiver.post("/api/notify", {"type": "notification", "data": {**NOTE, "body": "2"}})
    assert plain.status_code == 202, plain.text
    assert lanes(conn) == [("notification", 1), ("notification", 0)]

    user = {"user_id": "8c5e3b3a-5d5e-4bd4-9d43-1b0f0f5b0a11", "email": "u@example.com"}
    signup = {"type": "welcome_email", "data": user}
    refused = receiver.post("/api/notify", {**signup, "priority": "bulk"})
    assert refused.status_code == 422
    assert "welcome_email is always transactional" in refused.json()["detail"]
    odd = receiver.post("/api/notify", {"type": "notification", "data": NOTE, "priority": "low"})
    assert odd.status_code == 422 and "priority" in odd.json()["detail"]
    assert len(lanes(conn)) == 2
