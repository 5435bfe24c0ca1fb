"""daily-stats against a real PostgreSQL: local days across DST, catch-up, idempotence."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter
from zoneinfo import ZoneInfo

import psycopg
import pytest

from blocks import connector_for
from taskflow_jobs import db
from taskflow_jobs.reports import render, stats, summaries
from taskflow_jobs.sql import query

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC
UTC_ZONE = ZoneInfo("UTC")


def add_tasks(conn: psycopg.Connection, created: list[dt.datetime], completed=None) -> None:
    completed = completed or [None] * len(created)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.tasks (title, status, created_at, completed_at)"
            " VALUES ('t', %s, %s, %s)",
            [
                ("completed" if done else "todo", made, done)
                for made, done in zip(created, completed, strict=True)
            ],
        )


def add_users(conn: psycopg.Connection, created: list[dt.datetime]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO auth.users (email, created_at) VALUES (%s, %s)",
            [(f"u{i}@example.com", at) for i, at in enumerate(created)],
        )


def stored(conn: psycopg.Connection) -> dict[dt.date, tuple[int, int, int]]:
    rows = conn.execute("SELECT * FROM public.daily_stats ORDER BY date").fetchall()
    return {r["date"]: (r["new_tasks"], r["completed_tasks"], r["new_users"]) for r in rows}


def test_day_bounds_follow_dst_in_berlin() -> None:
    spring = stats.day_bounds(dt.date(2024, 3, 31), BERLIN)
    autumn = stats.day_bounds(dt.date(2024, 10, 27), BERLIN)
    ordinary = stats.day_bounds(dt.date(2024, 6, 1), BERLIN)
    assert spring == (
        dt.datetime(2024, 3, 30, 23, tzinfo=UTC),
        dt.datetime(2024, 3, 31, 22, tzinfo=UTC),
    )
    assert autumn[1] - autumn[0] == dt.timedelta(hours=25)
    assert ordinary[1] - ordinary[0] == dt.timedelta(hours=24)


def test_one_row_per_utc_hour_counts_the_hours_of_each_local_day(conn) -> None:
    """23 hours on the last Sunday of March, 25 on the last Sunday of October."""
    start = dt.datetime(2024, 3, 29, 0, 30, tzinfo=UTC)
    hours = [start + dt.timedelta(hours=h) for h in range(24 * 5)]
    autumn = dt.datetime(2024, 10, 25, 0, 30, tzinfo=UTC)
    hours += [autumn + dt.timedelta(hours=h) for h in range(24 * 5)]
    add_tasks(conn, hours)
    days = [dt.date(2024, 3, 30), dt.date(2024, 3, 31), dt.date(2024, 4, 1)]
    days += [dt.date(2024, 10, 26), dt.date(2024, 10, 27), dt.date(2024, 10, 28)]

    computed = {s.date: s.new_tasks for s in stats.refresh(conn, days, BERLIN)}

    assert computed == {
        dt.date(2024, 3, 30): 24,
        dt.date(2024, 3, 31): 23,
        dt.date(2024, 4, 1): 24,
        dt.date(2024, 10, 26): 24,
        dt.date(2024, 10, 27): 25,
        dt.date(2024, 10, 28): 24,
    }


def test_random_activity_matches_a_python_count_by_local_day(conn) -> None:
    rng = random.Random(20240331)
    window = (dt.datetime(2024, 3, 25, tzinfo=UTC), dt.datetime(2024, 4, 5, tzinfo=UTC))
    span = (window[1] - window[0]).total_seconds()

    def instant() -> dt.datetime:
        return window[0] + dt.timedelta(seconds=rng.uniform(0, span))

    created = sorted(instant() for _ in range(3000))
    completed = [
        (at + dt.timedelta(hours=rng.uniform(0, 30))) if rng.random() < 0.6 else None
        for at in created
    ]
    users = [instant() for _ in range(800)]
    add_tasks(conn, created, completed)
    add_users(conn, users)

    days = [dt.date(2024, 3, 26) + dt.timedelta(days=i) for i in range(9)]
    computed = stats.refresh(conn, days, BERLIN)

    def local(values):
        return Counter(v.astimezone(BERLIN).date() for v in values if v is not None)

    new, done, signups = local(created), local(completed), local(users)
    assert [(s.date, s.new_tasks, s.completed_tasks, s.new_users) for s in computed] == [
        (d, new[d], done[d], signups[d]) for d in days
    ]
    assert stored(conn) == {d: (new[d], done[d], signups[d]) for d in days}


def test_catch_up_fills_exactly_the_missing_days_of_the_window(conn) -> None:
    day = dt.date(2024, 4, 10)
    noon = [
        dt.datetime.combine(day - dt.timedelta(days=i), dt.time(12), tzinfo=UTC) for i in range(12)
    ]
    add_tasks(conn, noon * 2)  # two tasks per day, twelve days
    stats.refresh(conn, [day - dt.timedelta(days=3)], UTC_ZONE)  # already computed before the gap
    conn.execute(
        "INSERT INTO public.daily_stats (date, new_tasks, completed_tasks, new_users)"
        " VALUES (%s, 99, 0, 0)",
        (day - dt.timedelta(days=5),),
    )

    run = stats.run_daily_stats(conn, day, UTC_ZONE, catch_up_days=7)

    expected_filled = [day - dt.timedelta(days=i) for i in (6, 4, 2, 1)]
    assert run.filled == expected_filled
    assert run.stats.new_tasks == 2
    rows = stored(conn)
    assert sorted(rows) == [day - dt.timedelta(days=i) for i in range(6, -1, -1)]
    assert rows[day - dt.timedelta(days=5)] == (99, 0, 0)  # present rows are left alone
    assert all(v == (2, 0, 0) for d, v in rows.items() if d != day - dt.timedelta(days=5))


def test_the_requested_day_is_always_recomputed(conn) -> None:
    day = dt.date(2024, 4, 10)
    add_tasks(conn, [dt.datetime(2024, 4, 10, 8, tzinfo=UTC)] * 3)
    conn.execute(
        "INSERT INTO public.daily_stats (date, new_tasks, completed_tasks, new_users)"
        " VALUES (%s, 42, 42, 42)",
        (day,),
    )
    run = stats.run_daily_stats(conn, day, UTC_ZONE, catch_up_days=1)
    assert run.filled == []
    assert stored(conn) == {day: (3, 0, 0)}


def test_reruns_and_concurrent_runs_leave_one_correct_row_per_day(database_url: str) -> None:
    day = dt.date(2024, 4, 10)
    with db.connect(database_url, autocommit=True) as conn:
        times = [dt.datetime(2024, 4, d, h, tzinfo=UTC) for d in range(1, 11) for h in (3, 15)]
        add_tasks(conn, times)
        first = stats.run_daily_stats(conn, day, UTC_ZONE, 7)
        before = stored(conn)
        conn.execute(
            "DELETE FROM public.daily_stats WHERE date < %s", (day - dt.timedelta(days=2),)
        )

    errors: list[BaseException] = []

    def run() -> None:
        try:
            with db.connect(database_url, autocommit=True) as c:
                stats.run_daily_stats(c, day, UTC_ZONE, 7)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.connect(database_url, autocommit=True) as conn:
        stats.run_daily_stats(conn, day, UTC_ZONE, 7)
        assert stored(conn) == before
        assert conn.execute("SELECT count(*) AS n FROM public.daily_stats").fetchone()["n"] == 7
    assert len(first.computed) == 7


def test_the_counts_can_use_the_indexes_and_the_original_sql_cannot(conn) -> None:
    """With sequential scans priced out, ours has bounded index scans; DATE() has none."""
    conn.execute("SET enable_seqscan = off")
    start, end = stats.day_bounds(dt.date(2024, 4, 1), BERLIN)
    params = {"days": [dt.date(2024, 4, 1)], "start": start, "end": end, "tz": BERLIN.key}
    ours = "\n".join(
        r["QUERY PLAN"] for r in conn.execute("EXPLAIN " + query("refresh_daily_stats"), params)
    )
    original = "\n".join(
        r["QUERY PLAN"]
        for r in conn.execute(
            "EXPLAIN SELECT count(*) FROM public.tasks WHERE DATE(created_at) = CURRENT_DATE - 1"
        )
    )
    assert "Seq Scan" not in ours
    for index in ("tasks_created_at_idx", "tasks_completed_at_idx", "users_created_at_idx"):
        assert index in ours
    assert ours.count("Index Cond: ((created_at >=") == 2
    assert ours.count("Index Cond: ((completed_at >=") == 1
    # DATE(created_at) is computed per row: at best the whole index is read, unbounded
    assert "Index Cond" not in original


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, dt.date(2024, 3, 30)), ("", dt.date(2024, 3, 30)), ("2024-03-01", dt.date(2024, 3, 1))],
)
def test_resolve_day_defaults_to_yesterday_in_the_app_timezone(value, expected) -> None:
    # 23:30 UTC on the 30th is already the 31st in Berlin
    now = dt.datetime(2024, 3, 30, 23, 30, tzinfo=UTC)
    assert stats.resolve_day(value, BERLIN, now) == expected


@pytest.mark.parametrize("value", ["31/03/2024", "yesterday", "2024-02-30"])
def test_malformed_dates_are_refused_with_the_value(value) -> None:
    with pytest.raises(stats.InvalidDate, match="ISO date") as caught:
        stats.resolve_day(value, BERLIN)
    assert value in str(caught.value)


def test_a_day_that_has_not_ended_is_refused() -> None:
    now = dt.datetime(2024, 3, 30, 23, 30, tzinfo=UTC)
    with pytest.raises(stats.InvalidDate, match="has not ended yet in Europe/Berlin"):
        stats.resolve_day("2024-03-31", BERLIN, now)


def test_the_report_reads_the_same_history_through_the_database_block(
    conn, database_url: str
) -> None:
    """The daily report's frame comes through the SqlAlchemyConnector block's engine with
    pandas; it says exactly what the psycopg rows say."""
    day = dt.date(2026, 3, 10)
    tz = ZoneInfo("UTC")
    noon = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    add_tasks(conn, [noon + dt.timedelta(days=d, minutes=m) for d in range(10) for m in range(d)])
    add_users(conn, [noon + dt.timedelta(days=d) for d in (2, 5, 9)])
    engine = connector_for(database_url).get_engine()
    try:
        result = summaries.daily(conn, day, tz, 14, engine)
        first = day - dt.timedelta(days=13)
        frame = stats.history_frame(engine, first, day)
    finally:
        engine.dispose()
    assert result.report.figures["new_tasks"] == 9
    rows = stats.history(conn, first, day)
    assert render.daily_report(frame, day, "UTC") == render.daily_report(rows, day, "UTC")
