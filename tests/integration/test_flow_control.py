"""Priority lanes, pauses and the shared provider rate limit, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from taskflow_jobs import db
from taskflow_jobs.jobs import pauses, queue
from taskflow_jobs.jobs.ratelimit import ProviderThrottle
from taskflow_jobs.settings import EMAIL_QUEUE as Q
from taskflow_jobs.sql import query

T0 = datetime.now(UTC) + timedelta(hours=1)


def note(n: int) -> dict:
    return {"type": "notification", "to": f"u{n}@example.com", "subject": "s", "body": "b"}


def welcome(n: int) -> dict:
    return {"type": "welcome_email", "user_id": f"00000000-0000-0000-0000-{n:012d}"}


def claimed_types(batch: queue.Batch) -> list[str | None]:
    return [m.type for m in sorted(batch.messages, key=lambda m: m.id)]


# --- priority lanes --------------------------------------------------------------------


def test_a_signup_is_claimed_before_thousands_of_bulk_messages(conn: psycopg.Connection) -> None:
    bulk = queue.send_batch(conn, Q, [note(i) for i in range(3000)], priority=queue.BULK)
    signup = queue.send(conn, Q, welcome(1))
    batch = queue.claim(conn, Q, 5, 30, now=T0)
    assert batch.ids == [signup, *bulk[:4]], "the signup first (a batch sends it first too)"
    assert queue.claim(conn, Q, 3, 30, now=T0).ids == bulk[4:7], "then bulk, oldest first"


def test_within_a_lane_the_oldest_visible_message_comes_first(conn: psycopg.Connection) -> None:
    first = queue.send(conn, Q, welcome(1))
    retried = queue.send(conn, Q, welcome(2))
    third = queue.send(conn, Q, welcome(3))
    leased = queue.claim(conn, Q, 1, 30, now=T0)
    assert leased.ids == [first]
    queue.ack(conn, leased.token, leased.ids)
    held = queue.claim(conn, Q, 1, 30, now=T0)
    queue.retry_later(conn, held.token, retried, "try later", 60, now=T0)
    assert queue.claim(conn, Q, 5, 120, now=T0).ids == [third]
    assert queue.claim(conn, Q, 5, 30, now=T0 + timedelta(seconds=61)).ids == [retried]


def test_a_dead_letter_is_redriven_into_its_own_lane(conn: psycopg.Connection) -> None:
    (mid,) = queue.send_batch(conn, Q, [note(1)], priority=queue.BULK)
    batch = queue.claim(conn, Q, 1, 30, now=T0)
    queue.dead_letter(conn, batch.token, mid, "bad template")
    queue.redrive(conn, ids=[mid])
    signup = queue.send(conn, Q, welcome(1))
    assert queue.claim(conn, Q, 1, 30, now=T0).ids == [signup]
    assert queue.claim(conn, Q, 1, 30, now=T0).ids == [mid]


def test_an_unknown_priority_is_refused_naming_the_known_ones(conn: psycopg.Connection) -> None:
    with pytest.raises(ValueError, match="transactional, bulk"):
        queue.send(conn, Q, welcome(1), priority="urgent")


def test_the_express_lane_claims_transactional_messages_only(conn: psycopg.Connection) -> None:
    queue.send_batch(conn, Q, [note(i) for i in range(50)], priority=queue.BULK)
    signups = [queue.send(conn, Q, welcome(i)) for i in range(3)]
    pauses.pause(conn, Q, "task_assigned")
    queue.send(conn, Q, {"type": "task_assigned", "task_id": 1, "assignee_id": "x"})
    express = queue.claim(conn, Q, 10, 30, now=T0, last_lane=queue.TRANSACTIONAL)
    assert express.ids == signups, "lane 0, oldest first, paused types passed over"
    assert [m.priority for m in express.messages] == [0, 0, 0]
    assert queue.claim(conn, Q, 10, 30, now=T0, last_lane=queue.TRANSACTIONAL).ids == []
    assert {m.priority for m in queue.claim(conn, Q, 10, 30, now=T0).messages} == {1}


def test_batches_beside_an_express_lane_leave_it_the_fresh_transactional_messages(
    conn: psycopg.Connection,
) -> None:
    old = queue.send(conn, Q, welcome(1))
    conn.execute("UPDATE jobs.messages SET visible_at = visible_at - interval '10 min'")
    (bulk,) = queue.send_batch(conn, Q, [note(1)], priority=queue.BULK)
    fresh = queue.send(conn, Q, welcome(2))
    # an hour from now, "fresh" means visible for less than 65 minutes
    later = datetime.now(UTC) + timedelta(hours=1)
    claimed = queue.claim(conn, Q, 10, 30, now=later, leave_fresh=timedelta(minutes=65))
    assert claimed.ids == [old, bulk], "the fresh signup is left to the express lane"
    express = queue.claim(conn, Q, 10, 30, now=later, last_lane=queue.TRANSACTIONAL)
    assert express.ids == [fresh]


@pytest.mark.parametrize(
    ("last_lane", "leave_fresh"),
    [(queue.BULK, None), (queue.TRANSACTIONAL, None), (queue.BULK, 1.0)],
)
def test_the_claim_is_one_ordered_index_scan(
    conn: psycopg.Connection, last_lane: str, leave_fresh: float | None
) -> None:
    """The plan of the claim's inner SELECT, as PostgreSQL ran it inside jobs.claim (the
    batches' claim of every lane, the express lane's claim of lane 0, and the claim of the
    batches beside an express lane)."""
    queue.send_batch(conn, Q, [note(i) for i in range(5000)], priority=queue.BULK)
    queue.send_batch(conn, Q, [welcome(i) for i in range(500)])
    pauses.pause(conn, Q, "digest")  # the pause filter is part of the plan
    conn.execute("ANALYZE jobs.messages")
    plans: list[str] = []
    conn.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET auto_explain.log_level = notice")
    conn.execute("SET client_min_messages = notice")
    queue.claim(conn, Q, 100, 30, last_lane=last_lane, leave_fresh=leave_fresh)
    conn.execute("RESET client_min_messages")
    inner = [p for p in plans if "FOR UPDATE SKIP LOCKED" in p and "ORDER BY m.priority" in p]
    assert len(inner) == 1, plans
    plan = re.split(r"\n\s*\) c\n", inner[0], maxsplit=1)[1]  # after the query text
    print(plan)  # pytest -s shows it
    assert "Index Scan using messages_claim_idx on messages" in plan
    assert "Sort" not in plan, "the index order is the claim order"
    assert "Seq Scan" not in plan and "Bitmap" not in plan
    assert plan.count(" on messages m") == 1, "one scan of jobs.messages"
    assert "LockRows" in plan and "Limit" in plan, "stops after the batch: no full scan"
    assert "priority <= " in plan, "the lane bound is an index condition, not a filter"


# --- pause and resume ------------------------------------------------------------------


def test_a_paused_type_stays_queued_in_order_and_resumes_oldest_first(
    conn: psycopg.Connection,
) -> None:
    notes = [queue.send(conn, Q, note(i)) for i in range(3)]
    pauses.pause(conn, Q, "notification")
    signup = queue.send(conn, Q, welcome(1))
    assert queue.claim(conn, Q, 10, 30, now=T0).ids == [signup]
    assert queue.claim(conn, Q, 10, 30, now=T0).ids == []
    (paused,) = pauses.pauses(conn, Q)
    assert (paused.message_type, paused.source) == ("notification", "cli")
    assert pauses.resume(conn, Q, "notification") == ["notification"]
    assert queue.claim(conn, Q, 10, 30, now=T0).ids == notes


def test_a_paused_queue_claims_nothing_and_counts_nothing_visible(
    conn: psycopg.Connection,
) -> None:
    ids = [queue.send(conn, Q, welcome(i)) for i in range(3)]
    first = pauses.pause(conn, Q)
    assert pauses.pause(conn, Q) == first, "a second pause keeps the first one's start"
    assert queue.claim(conn, Q, 10, 30).ids == []
    params = {"queue": Q, "now": None, "limit": 10}
    assert conn.execute(query("email_visible_count"), params).fetchone()["n"] == 0
    next_in = conn.execute(query("email_next_visible_in"), {"queue": Q, "now": None}).fetchone()
    assert next_in["seconds"] is None, "a paused queue never wakes a consumer by itself"
    assert [m.depth for m in queue.metrics(conn, Q)] == [3], "nothing was dropped"
    pauses.resume(conn, Q)
    assert queue.claim(conn, Q, 10, 30).ids == ids


def test_resume_wakes_listening_consumers(database_url: str, conn: psycopg.Connection) -> None:
    queue.send(conn, Q, welcome(1))
    pauses.pause(conn, Q)
    with db.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {queue.CHANNEL}")
        pauses.resume(conn, Q)
        woken = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert woken == [Q]


def test_set_pauses_mirrors_a_state_and_keeps_start_times(conn: psycopg.Connection) -> None:
    start = pauses.pause(conn, Q, "notification")
    pauses.set_pauses(conn, Q, ["notification", "digest"], source=pauses.PREFECT)
    state = {p.message_type: p for p in pauses.pauses(conn, Q)}
    assert set(state) == {"notification", "digest"}
    assert state["notification"].paused_at == start
    pauses.set_pauses(conn, Q, [], source=pauses.PREFECT)
    assert pauses.pauses(conn, Q) == [], "the variable and the CLI are one switch"


# --- the shared rate limit -------------------------------------------------------------


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_three_processes_worth_of_throttles_share_one_limit(database_url: str) -> None:
    """Three throttles (as three consumers would hold), each greedy, for 6 s at 50/s."""
    rate, seconds, sent = 50.0, 6.0, []
    lock = threading.Lock()
    throttles = [ProviderThrottle("sendgrid", rate, database_url) for _ in range(3)]

    def consumer(throttle: ProviderThrottle) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if throttle.wait_blocking(end):
                with lock:
                    sent.append(time.monotonic())

    threads = [threading.Thread(target=consumer, args=(t,)) for t in throttles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in throttles:
        t.close()
    assert _max_in_window(sent, 2.0) <= rate * 2 * 1.05 + 1
    assert len(sent) >= rate * seconds * 0.85, "the limit is shared, not starved"
    assert sum(t.round_trips for t in throttles) < len(sent), "tokens come a chunk at a time"


def test_a_providers_backoff_holds_every_consumer(database_url: str) -> None:
    one = ProviderThrottle("sendgrid", None, database_url)
    other = ProviderThrottle("sendgrid", 100.0, database_url)
    assert one.take() == 0.0, "no limit, no backoff: no wait"
    assert other.take() < 0.1, "a fresh bucket: the first chunk is usable within 50 ms"
    one.back_off(1.5)
    time.sleep(0.3)
    spent = 0  # what it already held (one chunk at most) it may still spend
    while (wait := other.take()) == 0.0:
        spent += 1
    assert spent <= other.chunk
    assert 1.0 < wait <= 1.2, "then the other consumer waits out the same backoff"
    unlimited = ProviderThrottle("sendgrid", None, database_url)
    assert unlimited.take() > 0.5, "a backoff holds without a rate limit too"
    started = time.monotonic()
    assert asyncio.run(other.wait(deadline=time.monotonic() + 5))
    assert time.monotonic() - started > 0.5
    for t in (one, other, unlimited):
        t.close()


def test_a_token_that_would_come_after_the_deadline_is_not_waited_for(database_url: str) -> None:
    slow = ProviderThrottle("smtp", 1.0, database_url)  # a fresh bucket starts empty
    assert not asyncio.run(slow.wait(deadline=time.monotonic() + 0.2))
    assert asyncio.run(slow.wait(deadline=time.monotonic() + 3))
    slow.close()


def test_without_the_database_nothing_is_sent(pg_admin_url: str) -> None:
    dead = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1"
    throttle = ProviderThrottle("sendgrid", 10.0, dead)
    assert throttle.take() > 0, "fails closed: no token without the shared bucket"
    assert not asyncio.run(throttle.wait(deadline=time.monotonic() + 0.5))
