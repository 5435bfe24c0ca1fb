"""Queue semantics against a real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from taskflow_jobs import db
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE as Q

# a clock ahead of every message sent during the test, moved by hand
T0 = datetime.now(UTC) + timedelta(hours=1)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def send(conn: psycopg.Connection, n: int = 1, **kwargs: object) -> list[int]:
    return [queue.send(conn, Q, {"type": "welcome_email", "n": i}, **kwargs) for i in range(n)]


def state(conn: psycopg.Connection, message_id: int) -> dict:
    row = queue.message_state(conn, message_id)
    assert row is not None, f"message {message_id} vanished"
    return row


def claim_at(conn: psycopg.Connection, now: datetime, n: int = 10, vt: float = 30) -> queue.Batch:
    return queue.claim(conn, Q, n, vt, now=now)


def test_claim_then_ack_archives_the_message(conn: psycopg.Connection) -> None:
    (mid,) = send(conn)
    batch = queue.claim(conn, Q, 10, 30)
    assert batch.ids == [mid]
    assert batch.messages[0].attempt == 1
    assert batch.messages[0].payload == {"type": "welcome_email", "n": 0}
    assert queue.claim(conn, Q, 10, 30).ids == [], "a leased message must be invisible"
    assert queue.ack(conn, batch.token, batch.ids) == [mid]
    assert state(conn, mid)["state"] == "archived"
    assert queue.metrics(conn, Q)[0].depth == 0


def test_claim_respects_batch_size_and_order(conn: psycopg.Connection) -> None:
    ids = send(conn, 5)
    first = queue.claim(conn, Q, 3, 30)
    second = queue.claim(conn, Q, 3, 30)
    assert first.ids == ids[:3]
    assert second.ids == ids[3:]


def test_expired_lease_makes_message_visible_again_with_history(conn: psycopg.Connection) -> None:
    (mid,) = send(conn)
    first = claim_at(conn, T0, vt=30)
    assert first.ids == [mid]
    assert claim_at(conn, later(29)).ids == [], "still leased before the timeout"
    second = claim_at(conn, later(31))
    assert second.ids == [mid]
    message = second.messages[0]
    assert message.attempt == 2
    assert message.errors[-1]["error"] == "visibility timeout expired before ack"
    assert message.errors[-1]["attempt"] == 1


def test_lease_expiring_on_last_attempt_dead_letters(conn: psycopg.Connection) -> None:
    (mid,) = send(conn, max_attempts=1)
    assert claim_at(conn, T0).ids == [mid]
    assert claim_at(conn, later(60)).ids == []
    dead = state(conn, mid)
    assert dead["state"] == "dead"
    assert "visibility timeout expired" in dead["reason"]


def test_guarded_updates_only_touch_rows_still_leased_to_caller(conn: psycopg.Connection) -> None:
    (mid,) = send(conn)
    stale = claim_at(conn, T0, vt=10)
    fresh = claim_at(conn, later(11), vt=10)
    assert fresh.ids == [mid] and fresh.token != stale.token
    assert queue.ack(conn, stale.token, [mid]) == []
    assert not queue.retry_later(conn, stale.token, mid, "boom", 5)
    assert not queue.dead_letter(conn, stale.token, mid, "boom")
    assert queue.release(conn, stale.token, [mid]) == []
    row = state(conn, mid)
    assert row["state"] == "pending" and row["attempt"] == 2
    assert queue.ack(conn, fresh.token, [mid]) == [mid]


def test_ack_with_unknown_token_changes_nothing(conn: psycopg.Connection) -> None:
    (mid,) = send(conn)
    queue.claim(conn, Q, 1, 30)
    assert queue.ack(conn, uuid.uuid4(), [mid]) == []
    assert state(conn, mid)["state"] == "pending"


def test_ack_many_archives_each_batch_s_messages_under_its_own_token(
    conn: psycopg.Connection,
) -> None:
    first, second, third = send(conn, 3)
    a = queue.claim(conn, Q, 1, 30)
    b = queue.claim(conn, Q, 2, 30)
    assert a.ids == [first] and b.ids == [second, third]
    # one statement for both batches; `third` comes with the wrong token: not ours to ack
    done = queue.ack_many(conn, [(first, a.token), (second, b.token), (third, a.token)])
    assert sorted(done) == [first, second]
    assert [state(conn, m)["state"] for m in (first, second, third)] == [
        "archived",
        "archived",
        "pending",
    ]
    assert queue.ack_many(conn, []) == []


def test_retry_later_waits_for_its_delay_and_keeps_history(conn: psycopg.Connection) -> None:
    (mid,) = send(conn)
    batch = claim_at(conn, T0)
    assert queue.retry_later(conn, batch.token, mid, "421 try later", 60, now=later(1))
    assert claim_at(conn, later(60)).ids == [], "no retry before its scheduled time"
    retried = claim_at(conn, later(61))
    assert retried.ids == [mid]
    assert retried.messages[0].attempt == 2
    assert retried.messages[0].errors == [
        {"at": retried.messages[0].errors[0]["at"], "attempt": 1, "error": "421 try later"}
    ]


def test_dead_letter_and_redrive_keep_history(conn: psycopg.Connection) -> None:
    (mid,) = send(conn)
    batch = queue.claim(conn, Q, 1, 30)
    queue.retry_later(conn, batch.token, mid, "timeout", 0)
    batch = queue.claim(conn, Q, 1, 30)
    assert queue.dead_letter(conn, batch.token, mid, "550 mailbox unavailable")
    (dead,) = queue.dead_letters(conn, queue=Q)
    assert dead.id == mid and dead.reason == "550 mailbox unavailable"
    assert [e["error"] for e in dead.errors] == ["timeout", "550 mailbox unavailable"]
    assert dead.attempt == 2
    assert queue.metrics(conn, Q)[0].dead_letters == 1

    assert queue.redrive(conn, ids=[mid]) == [mid]
    assert queue.dead_letters(conn, queue=Q) == []
    again = queue.claim(conn, Q, 1, 30).messages[0]
    assert again.id == mid
    assert again.attempt == 1, "a redriven message gets a fresh set of attempts"
    assert again.redrive_count == 1
    assert [e["error"] for e in again.errors] == ["timeout", "550 mailbox unavailable"]


def test_redrive_filters_by_type_and_needs_explicit_all(conn: psycopg.Connection) -> None:
    a = queue.send(conn, Q, {"type": "welcome_email"})
    b = queue.send(conn, Q, {"type": "task_assigned"})
    batch = queue.claim(conn, Q, 2, 30)
    queue.dead_letter_many(conn, batch.token, [queue.Failure(a, "x"), queue.Failure(b, "y")])
    with pytest.raises(ValueError, match="all=True"):
        queue.redrive(conn)
    assert queue.redrive(conn, message_type="task_assigned") == [b]
    assert queue.redrive(conn, all=True) == [a]


def test_idempotency_key_returns_existing_id_even_after_ack(conn: psycopg.Connection) -> None:
    first = queue.send(conn, Q, {"type": "welcome_email"}, idempotency_key="signup:1")
    assert queue.send(conn, Q, {"type": "welcome_email"}, idempotency_key="signup:1") == first
    batch = queue.claim(conn, Q, 10, 30)
    assert batch.ids == [first]
    queue.ack(conn, batch.token, batch.ids)
    assert queue.send(conn, Q, {"type": "welcome_email"}, idempotency_key="signup:1") == first
    assert queue.send(conn, Q, {"type": "welcome_email"}, idempotency_key="signup:2") != first


def test_concurrent_sends_with_one_key_make_one_message(database_url: str) -> None:
    with db.connect(database_url) as a, db.connect(database_url) as b:
        id_a = queue.send(a, Q, {"type": "welcome_email"}, idempotency_key="k")
        result: list[int] = []
        waiter = threading.Thread(
            target=lambda: result.append(
                queue.send(b, Q, {"type": "welcome_email"}, idempotency_key="k")
            )
        )
        waiter.start()  # blocks on a's uncommitted key
        a.commit()
        waiter.join(10)
        b.commit()
        assert result == [id_a]
        assert queue.metrics(a, Q)[0].depth == 1


def test_send_rolled_back_leaves_nothing(database_url: str) -> None:
    with db.connect(database_url) as conn:
        queue.send(conn, Q, {"type": "welcome_email"})
        conn.rollback()
        assert queue.metrics(conn, Q)[0].depth == 0


def test_bad_sends_are_refused_clearly(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='unknown queue "nope"'):
        queue.send(conn, "nope", {"type": "x"})
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="JSON object"):
        conn.execute("SELECT jobs.send('email_notifications', '[1,2]'::jsonb)")


def test_delayed_send_and_metrics(conn: psycopg.Connection) -> None:
    send(conn, 2)
    queue.send(conn, Q, {"type": "welcome_email"}, delay=3600)
    queue.claim(conn, Q, 1, 30)
    m = queue.metrics(conn, Q)[0]
    assert (m.depth, m.visible, m.in_flight, m.delayed, m.dead_letters) == (3, 1, 1, 1, 0)
    assert m.oldest_age_seconds is not None and m.oldest_age_seconds >= 0
    view = conn.execute("SELECT * FROM jobs.queue_metrics WHERE queue = %s", (Q,)).fetchone()
    assert view["depth"] == 3


def test_release_returns_messages_without_spending_an_attempt(conn: psycopg.Connection) -> None:
    send(conn, 2)
    batch = queue.claim(conn, Q, 2, 300)
    assert sorted(queue.release(conn, batch.token, batch.ids)) == sorted(batch.ids)
    again = queue.claim(conn, Q, 2, 300)
    assert again.ids == batch.ids
    assert {m.attempt for m in again.messages} == {1}


def test_send_batch_keeps_order(conn: psycopg.Connection) -> None:
    ids = queue.send_batch(conn, Q, [{"type": "welcome_email", "n": i} for i in range(50)])
    claimed = queue.claim(conn, Q, 100, 30)
    assert claimed.ids == ids
    assert [m.payload["n"] for m in claimed.messages] == list(range(50))


def test_notify_on_insert_wakes_a_listener(database_url: str) -> None:
    with db.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {queue.CHANNEL}")
        with db.connect(database_url, autocommit=True) as sender:
            queue.send(sender, Q, {"type": "welcome_email"}, delay=600)
            queue.send(sender, Q, {"type": "welcome_email"})
        got = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
        assert got == [Q]
        assert list(listener.notifies(timeout=0.5)) == [], "a delayed message does not notify"


def test_four_consumers_claim_each_of_10000_messages_exactly_once(database_url: str) -> None:
    total = 10_000
    with db.connect(database_url, autocommit=True) as conn:
        for _start in range(0, total, 1000):
            queue.send_batch(conn, Q, [{"type": "welcome_email", "n": i} for i in range(1000)])
    seen: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def consume(slot: int) -> None:
        try:
            with db.connect(database_url, autocommit=True) as conn:
                while True:
                    batch = queue.claim(conn, Q, 97, 300)
                    if not batch:
                        return
                    seen[slot].extend(batch.ids)
                    assert sorted(queue.ack(conn, batch.token, batch.ids)) == batch.ids
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    everything = [i for ids in seen for i in ids]
    assert len(everything) == total
    assert len(set(everything)) == total, "a message was claimed twice"
    assert all(seen), "every consumer should have taken part"
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) AS n FROM jobs.archive").fetchone()["n"] == total
        assert queue.metrics(conn, Q)[0].depth == 0
