"""weekly-summary against a real PostgreSQL: email totals by time window, missing days filled."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from taskflow_jobs.jobs import queue
from taskflow_jobs.reports import stats, summaries
from taskflow_jobs.settings import EMAIL_QUEUE

UTC_ZONE = ZoneInfo("UTC")
REAL_NOW = dt.datetime.now(dt.UTC)
START = REAL_NOW - dt.timedelta(days=8)
END = REAL_NOW - dt.timedelta(days=1)
IN = START + dt.timedelta(days=2)
BEFORE = START - dt.timedelta(days=2)
AFTER = END + dt.timedelta(hours=12)


def fail_once(conn, message_id: int, at: dt.datetime) -> None:
    """Claim (now) and record a transient failure at `at`; visible again right away."""
    batch = queue.claim(conn, EMAIL_QUEUE, 100, 60)
    assert message_id in batch.ids
    queue.retry_later(conn, batch.token, message_id, "smtp 451", 0, now=at)
    queue.release(conn, batch.token, [i for i in batch.ids if i != message_id])


def claim_one(conn, message_id: int):
    batch = queue.claim(conn, EMAIL_QUEUE, 100, 60)
    queue.release(conn, batch.token, [i for i in batch.ids if i != message_id])
    return batch.token


def test_email_totals_count_by_when_things_happened(conn) -> None:
    send = {n: queue.send(conn, EMAIL_QUEUE, {"type": "welcome_email", "n": n}) for n in "ABCDEF"}
    # A: failed once in the window, then sent in the window
    fail_once(conn, send["A"], IN)
    queue.ack(conn, claim_one(conn, send["A"]), [send["A"]], now=IN + dt.timedelta(hours=1))
    # B: failed and sent before the window
    fail_once(conn, send["B"], BEFORE)
    queue.ack(conn, claim_one(conn, send["B"]), [send["B"]], now=BEFORE + dt.timedelta(hours=1))
    # C: failed in the window, then dead-lettered in the window (its burial is no retry)
    fail_once(conn, send["C"], IN)
    queue.dead_letter(conn, claim_one(conn, send["C"]), send["C"], "permanent: 550", now=IN)
    # D: failed in the window, still waiting
    fail_once(conn, send["D"], IN)
    # E: failed in the window, sent after it
    fail_once(conn, send["E"], IN)
    queue.ack(conn, claim_one(conn, send["E"]), [send["E"]], now=AFTER)
    # F: failed before the window, sent in it
    fail_once(conn, send["F"], BEFORE)
    queue.ack(conn, claim_one(conn, send["F"]), [send["F"]], now=IN)

    totals = stats.email_totals(conn, EMAIL_QUEUE, START, END)

    assert totals == stats.EmailTotals(sent=2, retried=4, dead_lettered=1)


def test_weekly_summary_fills_missing_days_then_totals_them(conn) -> None:
    last = dt.date(2024, 4, 14)
    conn.execute(
        "INSERT INTO public.tasks (title, created_at)"
        " SELECT 't', d + interval '12 hours'"
        " FROM generate_series('2024-04-08'::date, '2024-04-14'::date, interval '1 day') AS d"
    )
    stats.refresh(conn, [dt.date(2024, 4, 10)], UTC_ZONE)

    report = summaries.weekly(conn, last, UTC_ZONE, EMAIL_QUEUE)

    assert report.figures["new_tasks"] == 7
    assert "No figures stored" not in report.markdown
    rows = conn.execute("SELECT count(*) AS n FROM public.daily_stats").fetchone()["n"]
    assert rows == 7
    assert report.figures["emails_sent"] == 0
