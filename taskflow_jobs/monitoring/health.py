"""The hourly health check: database, queues, dead letters, and our flow runs.

Every check yields a row for the artifact table, and a `Problem` when a threshold (a
setting) is crossed. A check that cannot run (database down, Prefect API error) is a
problem itself: the health check never fails silently and never crashes on them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

import psycopg

from taskflow_jobs import db
from taskflow_jobs.db import Connection
from taskflow_jobs.jobs import pauses, queue
from taskflow_jobs.monitoring import prefect_api
from taskflow_jobs.monitoring.incidents import Problem
from taskflow_jobs.settings import Settings
from taskflow_jobs.sql import query

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    threshold: str
    ok: bool
    problem: Problem | None = None

    def row(self) -> dict[str, str]:
        return {
            "check": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "status": "ok" if self.ok else "PROBLEM",
        }


def _failed(name: str, value: str, threshold: str, key: str, summary: str) -> Check:
    return Check(name, value, threshold, False, Problem(key, summary))


@dataclass
class HealthReport:
    checked_at: dt.datetime
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [c.problem for c in self.checks if c.problem is not None]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def table(self) -> list[dict[str, str]]:
        return [c.row() for c in self.checks]


def check_database(url: str, settings: Settings) -> tuple[list[Check], Connection | None]:
    """Connect and time the best of three round trips; returns the open connection or None."""
    limit = settings.health_max_db_latency_ms
    try:
        conn = db.connect(url, autocommit=True, connect_timeout=5)
    except db.DatabaseUnavailable as exc:
        summary = f"Database unreachable: {exc}"
        return [_failed("database reachable", "no", "yes", "database_unreachable", summary)], None
    except Exception as exc:  # bad URL and the like: still a problem, still reported
        summary = f"Database unreachable: {type(exc).__name__}"
        return [_failed("database reachable", "no", "yes", "database_unreachable", summary)], None
    timings = []
    try:
        for _ in range(3):
            started = time.perf_counter()
            conn.execute(query("health_ping")).fetchone()
            timings.append((time.perf_counter() - started) * 1000)
    except psycopg.Error as exc:  # connected, then lost it
        conn.close()
        summary = f"Database unreachable: connection lost ({type(exc).__name__})"
        return [_failed("database reachable", "no", "yes", "database_unreachable", summary)], None
    latency = min(timings)
    checks = [Check("database reachable", "yes", "yes", True)]
    value, threshold = f"{latency:.1f} ms", f"<= {limit:g} ms"
    if latency > limit:
        summary = f"Database round trip {latency:.0f} ms (limit {limit:g} ms)"
        checks.append(_failed("database round trip", value, threshold, "database_slow", summary))
    else:
        checks.append(Check("database round trip", value, threshold, True))
    return checks, conn


def check_queues(conn: Connection, settings: Settings, since: dt.datetime) -> list[Check]:
    checks: list[Check] = []
    max_depth, max_age = settings.health_max_queue_depth, settings.health_max_message_age
    for m in queue.metrics(conn):
        name = f"queue {m.queue} depth"
        if m.depth > max_depth:
            summary = f"Queue {m.queue} holds {m.depth:,} messages (limit {max_depth:,})"
            key = f"queue_depth:{m.queue}"
            checks.append(_failed(name, f"{m.depth:,}", f"<= {max_depth:,}", key, summary))
        else:
            checks.append(Check(name, f"{m.depth:,}", f"<= {max_depth:,}", True))
        age = m.oldest_visible_age_seconds or 0.0
        name = f"queue {m.queue} oldest visible message"
        value, threshold = f"{age:.0f} s", f"<= {max_age:g} s"
        if age > max_age:
            summary = f"Oldest visible message in {m.queue} has waited {age / 60:.0f} min"
            checks.append(_failed(name, value, threshold, f"queue_age:{m.queue}", summary))
        else:
            checks.append(Check(name, value, threshold, True))
        checks.append(
            Check(f"queue {m.queue} dead letters (total)", f"{m.dead_letters:,}", "-", True)
        )

    rows = conn.execute(query("new_dead_letters"), {"since": since}).fetchall()
    new = {r["queue"]: r["n"] for r in rows}
    total, limit = sum(new.values()), settings.health_max_new_dead_letters
    value, threshold = f"{total:,}", f"<= {limit:,}"
    name = "dead letters since last check"
    if total > limit:
        detail = ", ".join(f"{q}: {n:,}" for q, n in sorted(new.items()))
        summary = f"{total:,} message(s) dead-lettered since {since:%Y-%m-%d %H:%M} UTC ({detail})"
        checks.append(_failed(name, value, threshold, "dead_letters", summary))
    else:
        checks.append(Check(name, value, threshold, True))
    return checks + check_pauses(conn, settings)


def check_pauses(conn: Connection, settings: Settings) -> list[Check]:
    """Every pause and how long it has lasted; a problem (one alert) once it outlives
    HEALTH_MAX_PAUSE, since a forgotten pause silently stops every email."""
    checks = []
    limit = settings.health_max_pause
    for p in pauses.pauses(conn):
        name = f"paused: {p.what} (by {p.source})"
        value, threshold = f"{p.paused_for_seconds / 60:.0f} min", f"<= {limit / 60:g} min"
        if p.paused_for_seconds > limit:
            summary = (
                f"{p.what[0].upper()}{p.what[1:]} paused for {p.paused_for_seconds / 3600:.1f} h "
                f"(since {p.paused_at:%Y-%m-%d %H:%M} UTC); resume: taskflow-jobs queue resume"
            )
            key = f"queue_paused:{p.queue}:{p.message_type}"
            checks.append(_failed(name, value, threshold, key, summary))
        else:
            checks.append(Check(name, value, threshold, True))
    return checks


def _runs(runs: list[prefect_api.RunSummary], limit: int = 5) -> str:
    names = ", ".join(f"{r.flow}/{r.name} ({r.state})" for r in runs[:limit])
    return names + (f" and {len(runs) - limit} more" if len(runs) > limit else "")


def check_flow_runs(settings: Settings, since: dt.datetime) -> list[Check]:
    try:
        failed, late = prefect_api.read_flow_runs(since)
    except Exception as exc:
        summary = f"Prefect API error while reading flow runs: {type(exc).__name__}: {exc}"[:300]
        return [_failed("prefect flow runs readable", "no", "yes", "prefect_api", summary)]
    checks = []
    limit = settings.health_max_failed_runs
    name, value, threshold = (
        "failed or crashed flow runs since last check",
        str(len(failed)),
        f"<= {limit}",
    )
    if len(failed) > limit:
        summary = f"{len(failed)} flow run(s) failed or crashed: {_runs(failed)}"
        checks.append(_failed(name, value, threshold, "failed_runs", summary))
    else:
        checks.append(Check(name, value, threshold, True))
    limit = settings.health_max_late_runs
    name, value, threshold = "late flow runs", str(len(late)), f"<= {limit}"
    if len(late) > limit:
        summary = f"{len(late)} flow run(s) are late (no worker picking them up?): {_runs(late)}"
        checks.append(_failed(name, value, threshold, "late_runs", summary))
    else:
        checks.append(Check(name, value, threshold, True))
    return checks


def run_checks(
    settings: Settings,
    since: dt.datetime,
    *,
    now: dt.datetime | None = None,
    include_flow_runs: bool = True,
) -> HealthReport:
    """Every check; problems found since `since` (the previous check)."""
    report = HealthReport(checked_at=now or dt.datetime.now(dt.UTC))
    try:
        url = db.database_url(settings)
    except Exception as exc:
        summary = f"Database unreachable: {type(exc).__name__}: {exc}"[:300]
        report.checks.append(
            _failed("database reachable", "no", "yes", "database_unreachable", summary)
        )
        url = None
    if url is not None:
        checks, conn = check_database(url, settings)
        report.checks += checks
        if conn is not None:
            with conn:
                try:
                    report.checks += check_queues(conn, settings, since)
                except Exception as exc:  # the database went away mid-check
                    summary = f"Database error during the queue checks: {type(exc).__name__}"
                    report.checks.append(
                        _failed("queue metrics readable", "no", "yes", "database_error", summary)
                    )
    if include_flow_runs:
        report.checks += check_flow_runs(settings, since)
    return report
