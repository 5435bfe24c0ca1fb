"""Daily statistics: new tasks, completed tasks and new users per day in APP_TIMEZONE.

A day is the half-open range [local midnight, next local midnight) as two `timestamptz`
values, so a DST day lasts 23 or 25 hours and the counts use the `created_at` /
`completed_at` indexes (the original design's `DATE(created_at) = CURRENT_DATE - 1`
computes a value per row and scans the whole table, in the server's time zone).

Catch-up: a run for day D recomputes D and fills every day of the N days ending at D
that has no row yet. All of them are counted by ONE statement with one index range scan
per table over the whole window, grouped by local day, and upserted in the same
statement, so re-runs and overlapping runs leave exactly one correct row per day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy.engine import Engine

from taskflow_jobs.db import Connection
from taskflow_jobs.sql import query


class InvalidDate(ValueError):
    """The requested report date is malformed or has not ended yet."""


@dataclass(frozen=True)
class DayStats:
    date: dt.date
    new_tasks: int
    completed_tasks: int
    new_users: int
    computed_at: dt.datetime | None = None


@dataclass(frozen=True)
class StatsRun:
    """What one daily-stats run did: the day asked for, and every day it (re)computed."""

    day: dt.date
    computed: list[DayStats] = field(default_factory=list)

    @property
    def filled(self) -> list[dt.date]:
        """Days other than `day` that were missing and are now filled (catch-up)."""
        return [s.date for s in self.computed if s.date != self.day]

    @property
    def stats(self) -> DayStats:
        return next(s for s in self.computed if s.date == self.day)


def today(tz: ZoneInfo, now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(tz).date()


def resolve_day(
    value: str | dt.date | None, tz: ZoneInfo, now: dt.datetime | None = None
) -> dt.date:
    """The day to report: an ISO date, or yesterday in `tz` when `value` is None or "".

    A day that has not ended yet in `tz` is refused: its row would be incomplete, and the
    catch-up never revisits a day that already has a row.
    """
    current = today(tz, now)
    if value is None or (isinstance(value, str) and not value.strip()):
        return current - dt.timedelta(days=1)
    if isinstance(value, dt.date):
        day = value
    else:
        try:
            day = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise InvalidDate(
                "date must be an ISO date such as 2024-03-31 (or empty for yesterday), "
                f"got {value!r}"
            ) from None
    if day >= current:
        raise InvalidDate(
            f"date {day.isoformat()} has not ended yet in {tz.key} (today is {current.isoformat()})"
        )
    return day


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The instant the local day starts, in UTC."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=tz).astimezone(dt.UTC)


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a local day as UTC instants (23 or 25 hours apart on DST days)."""
    return local_midnight(day, tz), local_midnight(day + dt.timedelta(days=1), tz)


def missing_days(conn: Connection, first: dt.date, last: dt.date) -> list[dt.date]:
    rows = conn.execute(query("missing_stats_days"), {"first": first, "last": last}).fetchall()
    return [row["date"] for row in rows]


def refresh(conn: Connection, days: Sequence[dt.date], tz: ZoneInfo) -> list[DayStats]:
    """Count and upsert `days` in one statement; returns the rows written, oldest first."""
    days = sorted(set(days))
    if not days:
        return []
    start, _ = day_bounds(days[0], tz)
    _, end = day_bounds(days[-1], tz)
    rows = conn.execute(
        query("refresh_daily_stats"),
        {"days": days, "start": start, "end": end, "tz": tz.key},
    ).fetchall()
    return sorted((DayStats(**row) for row in rows), key=lambda s: s.date)


def run_daily_stats(
    conn: Connection, day: dt.date, tz: ZoneInfo, catch_up_days: int = 7
) -> StatsRun:
    """Recompute `day` and fill the missing days of the `catch_up_days` days ending at it."""
    first = day - dt.timedelta(days=max(catch_up_days, 1) - 1)
    with conn.transaction():
        todo = set(missing_days(conn, first, day)) | {day}
        return StatsRun(day=day, computed=refresh(conn, sorted(todo), tz))


def fill_missing(conn: Connection, first: dt.date, last: dt.date, tz: ZoneInfo) -> list[DayStats]:
    """Compute only the days in [first, last] that have no row (weekly-summary uses this)."""
    with conn.transaction():
        return refresh(conn, missing_days(conn, first, last), tz)


def history(conn: Connection, first: dt.date, last: dt.date) -> list[DayStats]:
    rows = conn.execute(query("daily_stats_between"), {"first": first, "last": last}).fetchall()
    return [DayStats(**row) for row in rows]


def history_frame(engine: Engine, first: dt.date, last: dt.date) -> pd.DataFrame:
    """The same rows as `history`, read with pandas through a SQLAlchemy engine (the
    database block's), for the report's data frame."""
    # a plain string goes to the driver as it is: psycopg's %(name)s placeholders work
    with engine.connect() as conn:
        return pd.read_sql(
            query("daily_stats_between"), conn, params={"first": first, "last": last}
        )


@dataclass(frozen=True)
class EmailTotals:
    sent: int
    retried: int
    dead_lettered: int


def email_totals(conn: Connection, queue: str, start: dt.datetime, end: dt.datetime) -> EmailTotals:
    """Messages of `queue` sent, retried and dead-lettered in [start, end)."""
    row = conn.execute(
        query("email_totals"), {"queue": queue, "start": start, "end": end}
    ).fetchone()
    return EmailTotals(**row)  # type: ignore[arg-type]
