"""Cron runs that fell due while no worker polled: keep the newest, delete the rest, say so.

While no worker polls (the machine slept, `up` was stopped, a worker crashed), each cron
deployment's scheduled runs fall due one after another and wait, marked Late. A worker
that comes back submits every due run at once; the crons run one at a time (CANCEL_NEW),
so all but one end Cancelled, and a health check or weekly summary that starts too late
skips itself as an empty Completed run. Only the newest due run is worth running: the
older ones would report a past it reports too. So the older ones are deleted while they
are still Scheduled, which is what Prefect itself does to a deployment's scheduled runs
when the deployment changes, and they never appear in the run history. A newest run
later than the flow's own `max_lateness_minutes` goes too, and the next scheduled run
does the work.

What was skipped is said once: one log line from the process that pruned, and a note
(the flow-run input SKIPPED_KEY) on the run that works next, which that run logs and
puts in its artifact. The receiver prunes every EMAIL_SWEEP_INTERVAL, and `up` prunes
once before it starts its worker.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from taskflow_jobs.monitoring.prefect_api import FLOW_NAMES, LATE_STATE

log = logging.getLogger("taskflow_jobs.backlog")

SKIPPED_KEY = "taskflow-skipped-runs"
# a run in these states has not been submitted yet (AwaitingRetry and
# AwaitingConcurrencySlot have: they are a run under way, never deleted)
WAITING_STATES = ["Scheduled", LATE_STATE]
LATENESS_PARAMETER = "max_lateness_minutes"


@dataclass(frozen=True)
class Due:
    """A scheduled run of a cron deployment whose time has come."""

    id: UUID
    expected: dt.datetime


@dataclass(frozen=True)
class Skipped:
    """Runs of one deployment that were deleted unrun: how many, scheduled first..last."""

    deployment: str
    count: int
    first: dt.datetime
    last: dt.datetime

    @classmethod
    def of(cls, deployment: str, runs: list[Due]) -> Skipped:
        times = [r.expected for r in runs]
        return cls(deployment, len(runs), min(times), max(times))

    def merge(self, other: Skipped | None) -> Skipped:
        if other is None:
            return self
        return Skipped(
            self.deployment,
            self.count + other.count,
            min(self.first, other.first),
            max(self.last, other.last),
        )

    def text(self) -> str:
        """`skipped 5 health-check runs scheduled 2026-12-02 02:00–06:00 UTC`."""
        first, last = self.first.astimezone(dt.UTC), self.last.astimezone(dt.UTC)
        runs = "run" if self.count == 1 else "runs"
        clock = "%H:%M" if first.second == last.second == 0 else "%H:%M:%S"
        when = f"{first:%Y-%m-%d} {format(first, clock)}"
        if last != first:
            if first.date() == last.date():
                when += f"–{format(last, clock)}"
            else:
                when += f" – {last:%Y-%m-%d} {format(last, clock)}"
        return f"skipped {self.count} {self.deployment} {runs} scheduled {when} UTC"

    def to_json(self) -> str:
        return json.dumps(
            {
                "deployment": self.deployment,
                "count": self.count,
                "first": self.first.isoformat(),
                "last": self.last.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Skipped | None:
        try:
            data = json.loads(raw)
            return cls(
                str(data["deployment"]),
                int(data["count"]),
                dt.datetime.fromisoformat(data["first"]),
                dt.datetime.fromisoformat(data["last"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Plan:
    delete: list[Due]
    keep: Due | None


def plan(due: list[Due], now: dt.datetime, max_lateness: dt.timedelta | None) -> Plan:
    """Keep the newest due run (unless it is later than `max_lateness`); delete the rest."""
    if not due:
        return Plan([], None)
    ordered = sorted(due, key=lambda r: r.expected)
    newest = ordered[-1]
    if max_lateness is not None and now - newest.expected > max_lateness:
        return Plan(ordered, None)
    return Plan(ordered[:-1], newest)


def max_lateness_of(deployment: Any) -> dt.timedelta | None:
    """The deployment's `max_lateness_minutes` (its parameters, else the flow's default)."""
    value = (deployment.parameters or {}).get(LATENESS_PARAMETER)
    if value is None:
        schema = deployment.parameter_openapi_schema or {}
        value = schema.get("properties", {}).get(LATENESS_PARAMETER, {}).get("default")
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        return None
    return dt.timedelta(minutes=minutes) if minutes > 0 else None


@dataclass(frozen=True)
class Pruned:
    """One deployment's pass: what it deleted, what the next run's note now says (this
    pass and the notes the deleted runs carried), and the run that works next (if any)."""

    deleted: Skipped
    noted: Skipped
    next_run: UUID | None
    next_expected: dt.datetime | None
    next_is_due: bool

    def line(self) -> str:
        """The log line of this pass: each deleted run is said once, here."""
        if self.next_expected is None:
            then = "no run is scheduled yet"
        else:
            verb = "runs now" if self.next_is_due else "runs next"
            when = self.next_expected.astimezone(dt.UTC)
            then = f"the run scheduled {when:%Y-%m-%d %H:%M:%S} UTC {verb}"
        return f"{self.deleted.text()} (no worker ran them in time); {then}"


def read_note(client: Any, run_id: UUID) -> Skipped | None:
    try:
        return Skipped.from_json(client.read_flow_run_input(run_id, SKIPPED_KEY))
    except Exception:  # no note (404), or the run is gone
        return None


def _write_note(client: Any, run_id: UUID, skipped: Skipped) -> None:
    existing = read_note(client, run_id)
    if existing is not None:
        skipped = skipped.merge(existing)
        client.delete_flow_run_input(run_id, SKIPPED_KEY)
    client.create_flow_run_input(run_id, SKIPPED_KEY, skipped.to_json())


def _due_runs(client: Any, deployment_id: UUID, now: dt.datetime) -> list[Due]:
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=WAITING_STATES)),
            expected_start_time=FlowRunFilterExpectedStartTime(before_=now),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=200,
    )
    # only what the schedule made: a run someone asked for is theirs to keep
    return [
        Due(r.id, r.expected_start_time)
        for r in runs
        if r.auto_scheduled and r.run_count == 0 and r.expected_start_time is not None
    ]


def _upcoming(client: Any, deployment_id: UUID, now: dt.datetime) -> Due | None:
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"])),
            expected_start_time=FlowRunFilterExpectedStartTime(after_=now),
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=1,
    )
    return Due(runs[0].id, runs[0].expected_start_time) if runs else None


def _prune_deployment(client: Any, deployment: Any, now: dt.datetime) -> Pruned | None:
    decided = plan(_due_runs(client, deployment.id, now), now, max_lateness_of(deployment))
    if not decided.delete:
        return None
    target = decided.keep or _upcoming(client, deployment.id, now)
    deleted: list[Due] = []
    carried: Skipped | None = None
    for run in decided.delete:
        note = read_note(client, run.id)  # runs skipped in favour of this one earlier
        try:
            client.delete_flow_run(run.id)
        except ObjectNotFound:  # another pruner (a second receiver) was first
            continue
        deleted.append(run)
        carried = note.merge(carried) if note else carried
    if not deleted:
        return None
    now_deleted = Skipped.of(deployment.name, deleted)
    noted = now_deleted.merge(carried)
    if target is not None:
        _write_note(client, target.id, noted)
    return Pruned(
        now_deleted,
        noted,
        target.id if target else None,
        target.expected if target else None,
        decided.keep is not None,
    )


def prune(now: dt.datetime | None = None) -> list[Pruned]:
    """One pass over the deployments of our flows that have an active schedule."""
    now = now or dt.datetime.now(dt.UTC)
    done = []
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES)))
        )
        for deployment in deployments:
            if not any(s.active for s in deployment.schedules):
                continue
            pruned = _prune_deployment(client, deployment, now)
            if pruned is not None:
                log.info("%s", pruned.line())
                done.append(pruned)
    return done


def newest_due(client: Any, deployment: str) -> UUID | None:
    """The newest scheduled run of `deployment` ("flow/name") that is due and not yet
    submitted: a run asked for now would duplicate it (and collide with it)."""
    try:
        found = client.read_deployment_by_name(deployment)
    except ObjectNotFound:
        return None
    due = _due_runs(client, found.id, dt.datetime.now(dt.UTC))
    return due[-1].id if due else None


def note_for(run_id: UUID | str) -> Skipped | None:
    """The note the pruner left on this run: what was skipped in its favour."""
    with get_client(sync_client=True) as client:
        return read_note(client, UUID(str(run_id)))


def start_pruning(interval: float) -> threading.Thread | None:
    """Prune now and then every `interval` seconds in a daemon thread, so a slow or absent
    Prefect never holds up the caller; None (nothing started) without PREFECT_API_URL."""
    if not PREFECT_API_URL.value():
        return None

    def loop() -> None:
        while True:
            try:
                prune()
            except Exception as exc:  # Prefect down or restarting: try again next time
                log.debug("backlog pass skipped: %s", type(exc).__name__)
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="taskflow-backlog", daemon=True)
    thread.start()
    return thread
