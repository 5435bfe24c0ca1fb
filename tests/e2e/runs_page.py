"""The Prefect UI's Runs page as a user reads it, and what each listed run did (its task
runs, artifacts and state, from the Prefect API), for the browser check of the run history.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.e2e.browser import chromium_page
from tests.support.waiting import wait_for

WAITING = [StateType.SCHEDULED]  # the Runs page lists past runs, not the schedule's queue


@dataclass(frozen=True)
class Listed:
    """One row of the Runs page: the run it links to, its state badge and that badge's colour."""

    run_id: str
    name: str
    state: str
    colour: str


def read_runs_page(page: Any, ui: str) -> tuple[int, list[Listed]]:
    """(the page's "N runs" count, its rows); the viewport must be tall enough to render
    every row of the page's virtual scroller."""
    page.goto(f"{ui}/runs")
    page.locator(".flow-run-list-item").first.wait_for()
    page.wait_for_timeout(1500)  # the list settles after its first chunk
    count = int(re.search(r"(\d+) runs?\b", page.inner_text("body")).group(1))
    rows = []
    for item in page.locator(".flow-run-list-item").all():
        link = item.locator("a.flow-run-bread-crumbs__flow-run-link")
        badge = item.locator(".state-badge").first
        rows.append(
            Listed(
                run_id=link.get_attribute("href").rsplit("/", 1)[1],
                name=link.inner_text().strip(),
                state=badge.inner_text().strip(),
                colour=badge.evaluate("el => getComputedStyle(el).backgroundColor"),
            )
        )
    return count, rows


def _nonempty(artifact: Any) -> bool:
    data = artifact.data
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return bool(data.strip())
    return bool(data)


@dataclass(frozen=True)
class RunWork:
    name: str
    state: str
    state_type: str
    task_runs: int
    artifacts: int

    @property
    def did_something(self) -> bool:
        """Every run in the history sent, reported or checked something, or failed."""
        failed = self.state_type in ("FAILED", "CRASHED")
        return failed or self.task_runs > 0 or self.artifacts > 0


def past_runs(api_url: str) -> dict[str, RunWork]:
    """Every run that is not merely scheduled, by id, with what it did."""
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as c:
        runs = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(state={"type": FlowRunFilterStateType(not_any_=WAITING)}),
            limit=200,
        )
        out = {}
        for run in runs:
            artifacts = c.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
            tasks = c.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            out[str(run.id)] = RunWork(
                run.name,
                run.state.name,
                run.state.type.value,
                len(tasks),
                sum(_nonempty(a) for a in artifacts),
            )
    return out


IDLE_SECONDS = 90  # since `up` was ready; the journey's own steps take most of it


def check_run_history(api: str, ui: str, ready_at: float, screenshot: Path) -> None:
    """After IDLE_SECONDS since `ready_at` (time.monotonic()), with every run finished:
    every run the Runs page lists did something (task runs, a non-empty artifact) or
    failed, no two share a name, none is Cancelled or Crashed, and the DeadLettered run's
    badge has a colour of its own."""

    def idle_and_settled() -> dict | None:
        runs = past_runs(api)
        finished = all(r.state_type not in ("RUNNING", "PENDING") for r in runs.values())
        return runs if finished and time.monotonic() - ready_at >= IDLE_SECONDS else None

    runs = wait_for(idle_and_settled, IDLE_SECONDS + 120, "idle with every run finished", 5)
    with chromium_page(height=3000) as page:
        count, listed = read_runs_page(page, ui)
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.screenshot(path=str(screenshot))
    assert count == len(listed) == len(runs), (count, listed, runs)
    assert {row.run_id for row in listed} == set(runs)
    empty = [runs[row.run_id] for row in listed if not runs[row.run_id].did_something]
    assert empty == [], "runs that did nothing are listed"
    names = [row.name for row in listed]
    assert len(names) == len(set(names)), names
    assert not {row.state for row in listed} & {"Cancelled", "Crashed"}, listed
    [dead] = [row for row in listed if row.state == "DeadLettered"]
    completed = {row.colour for row in listed if row.state == "Completed"}
    assert completed and dead.colour not in completed, (dead, completed)
