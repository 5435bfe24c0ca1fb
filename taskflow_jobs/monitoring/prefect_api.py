"""The one reader of the Prefect API: our flow names, the work pool, deployments and runs.

Every other module asks here, so the names the UI shows are defined once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from prefect import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import (
    PREFECT_API_REQUEST_TIMEOUT,
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    temporary_settings,
)

EMAIL_DISPATCH = "email-dispatch"
DAILY_STATS = "daily-stats"
HEALTH_CHECK = "health-check"
CLEANUP = "cleanup"
WEEKLY_SUMMARY = "weekly-summary"
FLOW_NAMES = (EMAIL_DISPATCH, DAILY_STATS, HEALTH_CHECK, CLEANUP, WEEKLY_SUMMARY)

WORK_POOL = "taskflow-jobs"
WORK_POOL_TYPE = "process"
LATE_STATE = "Late"


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
class DeploymentStatus:
    flow: str
    name: str
    schedules: list[str]
    paused: bool
    last_run: RunInfo | None
    next_run: datetime | None


def run_info(run: Any, deployments: dict[Any, str], flows: dict[Any, str]) -> RunInfo:
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


async def deployment_statuses() -> list[DeploymentStatus]:

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
        for dep in sorted(
            found,
            key=lambda d: order.get(
                flow_names.get(  # type: ignore[arg-type]
                    d.flow_id,
                ),
                len(order),
            ),
        ):
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
                DeploymentStatus(
                    flow=flow,
                    name=dep.name,
                    schedules=schedules,
                    paused=bool(dep.paused),
                    last_run=run_info(finished[0], names, flow_names) if finished else None,
                    next_run=upcoming[0].expected_start_time if upcoming else None,
                )
            )
        return result


async def recent_runs(flow: str | None, limit: int) -> list[RunInfo]:

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
        return [run_info(r, deployments, flow_names) for r in runs if r.state_name != "Scheduled"]


class PrefectUnavailable(RuntimeError):
    pass


# `status` and `runs` answer within a few seconds even when the Prefect server is frozen
DEADLINE = 5.0


def call(coro: Any, deadline: float = DEADLINE) -> Any:
    """Run a Prefect API read with one overall deadline and no client retries."""
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


@dataclass(frozen=True)
class RunSummary:
    name: str
    flow: str
    state: str
    when: dt.datetime | None


def read_flow_runs(
    since: dt.datetime, flow_names: tuple[str, ...] = FLOW_NAMES
) -> tuple[list[RunSummary], list[RunSummary]]:
    """(failed or crashed since `since`, currently late) runs of our flows, via the Prefect API."""

    flows = FlowFilter(name=FlowFilterName(any_=list(flow_names)))
    failed_filter = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])
        ),
        end_time=FlowRunFilterEndTime(after_=since),
    )
    late_filter = FlowRunFilter(
        state=FlowRunFilterState(name=FlowRunFilterStateName(any_=[LATE_STATE]))
    )
    with get_client(sync_client=True) as client:
        flow_names_by_id = {}

        def summarise(runs: list) -> list[RunSummary]:
            out = []
            for run in runs:
                if run.flow_id not in flow_names_by_id:
                    flow_names_by_id[run.flow_id] = client.read_flow(run.flow_id).name
                state = run.state.name if run.state else "?"
                when = run.end_time or run.expected_start_time
                out.append(RunSummary(run.name, flow_names_by_id[run.flow_id], state, when))
            return out

        failed = summarise(
            client.read_flow_runs(flow_filter=flows, flow_run_filter=failed_filter, limit=50)
        )
        late = summarise(
            client.read_flow_runs(flow_filter=flows, flow_run_filter=late_filter, limit=50)
        )
    return failed, late


def schedule_text(schedule: object) -> str:
    """`0 1 * * * (UTC)` for a cron schedule; Prefect's own text for the others."""
    cron = getattr(schedule, "cron", None)
    return f"{cron} ({getattr(schedule, 'timezone', None) or 'UTC'})" if cron else str(schedule)


@dataclass(frozen=True)
class Deployment:
    name: str
    flow: str
    work_pool: str | None
    schedules: list[str]
    concurrency: str


def list_deployments(work_pool: str = WORK_POOL) -> list[Deployment]:

    pools = WorkPoolFilter(name=WorkPoolFilterName(any_=[work_pool]))
    out = []
    with get_client(sync_client=True) as client:
        for d in client.read_deployments(work_pool_filter=pools):
            flow = client.read_flow(d.flow_id).name
            schedules = [
                schedule_text(s.schedule) + ("" if s.active else " paused") for s in d.schedules
            ]
            options = d.concurrency_options
            limit = d.global_concurrency_limit.limit if d.global_concurrency_limit else None
            concurrency = (
                f"{limit} ({options.collision_strategy.value})"
                if limit and options
                else str(limit or "-")
            )
            out.append(Deployment(d.name, flow, d.work_pool_name, schedules, concurrency))
    return sorted(out, key=lambda d: d.flow)
