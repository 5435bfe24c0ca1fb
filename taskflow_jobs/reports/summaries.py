"""The daily and weekly jobs end to end, minus Prefect: compute, read back, build the report."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from taskflow_jobs.db import Connection
from taskflow_jobs.reports import render, stats


@dataclass(frozen=True)
class DailyResult:
    run: stats.StatsRun
    report: render.Report


def daily(
    conn: Connection, day: dt.date, tz: ZoneInfo, catch_up_days: int, engine: Engine | None = None
) -> DailyResult:
    """Recompute `day`, fill missing days, and report on the 14 days ending at `day`.

    With `engine` (the database block's SQLAlchemy engine) the report's history is read
    as a data frame with pandas; without it, from `conn`.
    """
    run = stats.run_daily_stats(conn, day, tz, catch_up_days)
    first = day - dt.timedelta(days=13)
    rows: render.History = (
        stats.history(conn, first, day)
        if engine is None
        else stats.history_frame(engine, first, day)
    )
    return DailyResult(run, render.daily_report(rows, day, tz.key, run.filled))


def week_ending(
    value: str | dt.date | None, tz: ZoneInfo, now: dt.datetime | None = None
) -> dt.date:
    """The last day of the summarised week: the given ISO date, or yesterday in `tz`."""
    return stats.resolve_day(value, tz, now)


def weekly(conn: Connection, last: dt.date, tz: ZoneInfo, queue: str) -> render.Report:
    """The 7 days ending at `last`: daily_stats (missing days filled first) and email totals."""
    first = last - dt.timedelta(days=6)
    stats.fill_missing(conn, first, last, tz)
    rows = stats.history(conn, first, last)
    start, _ = stats.day_bounds(first, tz)
    _, end = stats.day_bounds(last, tz)
    email = stats.email_totals(conn, queue, start, end)
    return render.weekly_report(rows, first, last, tz.key, email)
