"""What `taskflow-jobs status` and `runs` show: queues from Postgres, runs from Prefect.

The original design read `pgmq.metrics(...)`, a `job_failures` table and pg_cron's
`cron.job_run_details`; here the first two are the views `jobs.queue_metrics` and
`jobs.recent_failures`, and the cron history comes from Prefect's API.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import httpx

from taskflow_jobs import db, queue
from taskflow_jobs.deploy import schedule_text
from taskflow_jobs.sql import query

FLOW_NAMES = ("email-dispatch", "daily-stats", "health-check", "cleanup", "weekly-summary")


@dataclass(frozen=True)
class RunInfo:
    name: str
    flow: str
    deployment: str | None
    state: str
    expected_start: datetime | None
    start: datetime | None
    end: datetime | None
    duration_s: float | None


@dataclass(frozen=True)
class DeploymentInfo:
    flow: str
    name: str
    schedules: list[str]
    paused: bool
    last_run: RunInfo | None
    next_run: datetime | None


@dataclass
class Snapshot:
    queues: list[queue.QueueMetrics]
    dead_letters: list[queue.DeadLetter]
    recent_failures: list[dict[str, Any]]
    deployments: list[DeploymentInfo]
    prefect_error: str | None = None

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
        )


def _run_info(run: Any, deployments: dict[Any, str], flows: dict[Any, str]) -> RunInfo:
    return RunInfo(
        name=run.name,
        flow=flows.get(run.flow_id, "?"),
        deployment=deployments.get(run.deployment_id),
        state=run.state.name if run.state else "?",
        expected_start=run.expected_start_time,
        start=run.start_time,
        end=run.end_time,
        duration_s=round(run.total_run_time.total_seconds(), 1) if run.total_run_time else None,
    )


async def _deployments() -> list[DeploymentInfo]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        flows = await client.read_flows(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES)))
        )
        flow_names = {f.id: f.name for f in flows}
        found = await client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES)))
        )
        names = {d.id: d.name for d in found}
        result = []
        order = {name: i for i, name in enumerate(FLOW_NAMES)}
        for dep in sorted(found, key=lambda d: order.get(flow_names.get(d.flow_id), len(order))):
            flow = flow_names.get(dep.flow_id, "?")
            finished = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(
                            not_any_=[StateType.SCHEDULED, StateType.PENDING]
                        )
                    )
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=1,
            )
            upcoming = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    )
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=1,
            )
            schedules = [schedule_text(s.schedule) for s in dep.schedules if s.active]
            result.append(
                DeploymentInfo(
                    flow=flow,
                    name=dep.name,
                    schedules=schedules,
                    paused=bool(dep.paused),
                    last_run=_run_info(finished[0], names, flow_names) if finished else None,
                    next_run=upcoming[0].expected_start_time if upcoming else None,
                )
            )
        return result


async def _recent_runs(flow: str | None, limit: int) -> list[RunInfo]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    wanted = [flow] if flow else list(FLOW_NAMES)
    async with get_client() as client:
        flows = await client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=wanted)))
        flow_names = {f.id: f.name for f in flows}
        deployments = {d.id: d.name for d in await client.read_deployments()}
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=wanted)),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
        )
        return [_run_info(r, deployments, flow_names) for r in runs if r.state_name != "Scheduled"]


class PrefectUnavailable(RuntimeError):
    pass


# `status` answers within a few seconds even when the Prefect server is frozen
PREFECT_DEADLINE = 5.0


def _prefect(coro: Any, deadline: float = PREFECT_DEADLINE) -> Any:
    """Run a Prefect API read with one overall deadline and no client retries."""
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_API_URL,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    url = PREFECT_API_URL.value() or "(PREFECT_API_URL unset: an ephemeral server)"
    quick = {PREFECT_API_REQUEST_TIMEOUT: deadline, PREFECT_CLIENT_MAX_RETRIES: 0}
    try:
        with temporary_settings(quick):
            return asyncio.run(asyncio.wait_for(coro, deadline))
    except TimeoutError:
        raise PrefectUnavailable(
            f"Prefect API at {url} did not answer within {deadline:g}s"
        ) from None
    except (httpx.HTTPError, OSError, RuntimeError) as exc:
        raise PrefectUnavailable(
            f"Prefect API at {url} unreachable ({type(exc).__name__})"
        ) from None


def add_deployments(snap: Snapshot) -> Snapshot:
    """The Prefect part of `snap`, or the reason it is missing."""
    try:
        snap.deployments = _prefect(_deployments())
    except PrefectUnavailable as exc:
        snap.prefect_error = str(exc)
    return snap


def snapshot(url: str) -> Snapshot:
    """Queues and dead letters always; deployments when the Prefect API answers in time."""
    return add_deployments(database_snapshot(url))


def recent_runs(flow: str | None = None, limit: int = 20) -> list[RunInfo]:
    if flow is not None and flow not in FLOW_NAMES:
        raise ValueError(f"unknown flow {flow!r} (known: {', '.join(FLOW_NAMES)})")
    return _prefect(_recent_runs(flow, limit))
