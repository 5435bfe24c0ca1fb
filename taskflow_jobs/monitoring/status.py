"""What `taskflow-jobs status` and `runs` show: queues from Postgres, runs from Prefect.

The original design read `pgmq.metrics(...)`, a `job_failures` table and pg_cron's
`cron.job_run_details`; here the first two are the views `jobs.queue_metrics` and
`jobs.recent_failures`, and the cron history comes from Prefect's API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from taskflow_jobs import db
from taskflow_jobs.jobs import pauses, queue
from taskflow_jobs.jobs.pauses import Pause
from taskflow_jobs.monitoring import prefect_api
from taskflow_jobs.monitoring.prefect_api import (
    FLOW_NAMES,
    DeploymentStatus,
    PrefectUnavailable,
    RunInfo,
)
from taskflow_jobs.sql import query


@dataclass
class Snapshot:
    queues: list[queue.QueueMetrics]
    dead_letters: list[queue.DeadLetter]
    recent_failures: list[dict[str, Any]]
    deployments: list[DeploymentStatus]
    prefect_error: str | None = None
    pauses: list[Pause] = field(default_factory=list)
    rate_limits: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # last day, by type and why

    def to_json(self) -> dict[str, Any]:
        return {
            "queues": [asdict(q) for q in self.queues],
            "dead_letters": [
                {k: v for k, v in asdict(d).items() if k != "payload"}
                | {"type": d.payload.get("type")}
                for d in self.dead_letters
            ],
            "recent_failures": self.recent_failures,
            "deployments": [asdict(d) for d in self.deployments],
            "prefect_error": self.prefect_error,
            "pauses": [p.to_json() for p in self.pauses],
            "rate_limits": self.rate_limits,
            "skipped_last_day": self.skipped,
        }


def recent_failures(conn: Any, limit: int = 10) -> list[dict[str, Any]]:
    return conn.execute(query("recent_failures"), {"limit": limit}).fetchall()


def database_snapshot(url: str, dead_letter_limit: int = 5) -> Snapshot:
    with db.connect(url) as conn:
        return Snapshot(
            queues=queue.metrics(conn),
            dead_letters=queue.dead_letters(conn, limit=dead_letter_limit),
            recent_failures=recent_failures(conn),
            deployments=[],
            pauses=pauses.pauses(conn),
            rate_limits=conn.execute(query("rate_limits")).fetchall(),
            skipped=conn.execute(query("skipped_counts")).fetchall(),
        )


def add_deployments(snap: Snapshot) -> Snapshot:
    """The Prefect part of `snap`, or the reason it is missing (within a few seconds)."""
    try:
        snap.deployments = prefect_api.call(prefect_api.deployment_statuses())
    except PrefectUnavailable as exc:
        snap.prefect_error = str(exc)
    return snap


def snapshot(url: str) -> Snapshot:
    """Queues and dead letters always; deployments when the Prefect API answers in time."""
    return add_deployments(database_snapshot(url))


def recent_runs(flow: str | None = None, limit: int = 20) -> list[RunInfo]:
    if flow is not None and flow not in FLOW_NAMES:
        raise ValueError(f"unknown flow {flow!r} (known: {', '.join(FLOW_NAMES)})")
    return prefect_api.call(prefect_api.recent_runs(flow, limit))
