"""Monitoring views and the database half of `taskflow-jobs status`."""

from __future__ import annotations

import psycopg

from taskflow_jobs.jobs import queue
from taskflow_jobs.monitoring import status
from taskflow_jobs.settings import EMAIL_QUEUE as Q


def test_recent_failures_lists_every_recorded_error_with_its_outcome(
    conn: psycopg.Connection, database_url: str
) -> None:
    retried = queue.send(conn, Q, {"type": "welcome_email"})
    dead = queue.send(conn, Q, {"type": "task_assigned"})
    sent = queue.send(conn, Q, {"type": "notification"})
    batch = queue.claim(conn, Q, 3, 30)
    queue.retry_later_many(
        conn, batch.token, [queue.Retry(i, f"421 busy {i}", 0) for i in (retried, dead, sent)]
    )
    batch = queue.claim(conn, Q, 3, 30)
    queue.dead_letter(conn, batch.token, dead, "550 no such user")
    queue.ack(conn, batch.token, [sent])

    rows = status.recent_failures(conn, limit=50)
    outcomes = {(r["message_id"], r["error"]): r["outcome"] for r in rows}
    assert outcomes == {
        (retried, f"421 busy {retried}"): "pending",
        (dead, f"421 busy {dead}"): "dead",
        (dead, "550 no such user"): "dead",
        (sent, f"421 busy {sent}"): "sent",
    }
    snap = status.database_snapshot(database_url)
    assert [d.id for d in snap.dead_letters] == [dead]
    assert snap.queues[0].queue == Q and snap.queues[0].depth == 1
    assert snap.to_json()["dead_letters"][0]["type"] == "task_assigned"
