"""The heartbeat automation on the real server: a running flow run of ours that sent a
heartbeat and then fell silent (its machine lost, its process killed) is marked Crashed,
and that alerts Slack; a run that finished after its heartbeat is left as it ended.

Our flow runs heartbeat every 30 s (taskflow_jobs.monitoring.heartbeat) and
the automation waits ALERT_HEARTBEAT_TIMEOUT (90 s). Here the window is 10 s, and the
heartbeats are the events a worker's runner sends (same resource, same related flow), so
the test does not wait for a real process to go quiet. The deployed window is restored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.events import Event
from prefect.states import Completed, Running

from deployments import automations
from taskflow_jobs.monitoring.heartbeat import heartbeating
from taskflow_jobs.webhooks.events import PrefectEvents
from tests.support.prefect_stack import Deployed
from tests.support.waiting import wait_for

WINDOW = timedelta(seconds=10)
FLOW = "email-dispatch"


@flow(name=FLOW)
def email_dispatch_stand_in() -> None:
    """Only its name matters: runs of it are runs of the `email-dispatch` flow."""


@pytest.fixture
def short_window(deployed: Deployed) -> Iterator[None]:
    """The deployed zombie automation with a WINDOW-long wait; the default afterwards."""

    def apply(policy: automations.AlertPolicy) -> None:
        [zombies] = [
            a for a in automations.definitions(block_id, policy) if a.name == automations.ZOMBIES
        ]

        async def update() -> None:
            async with get_client() as client:
                await automations.apply(client, [zombies])

        asyncio.run(update())

    with deployed.server.client():
        block_id = automations.slack_block_id("taskflow-alerts")
        apply(automations.AlertPolicy(heartbeat_timeout=WINDOW))
        try:
            yield
        finally:
            apply(automations.AlertPolicy())


def heartbeat(run: FlowRun) -> Event:
    """What a worker's runner emits for a run it is executing."""
    return Event(
        event="prefect.flow-run.heartbeat",
        resource={
            "prefect.resource.id": f"prefect.flow-run.{run.id}",
            "prefect.resource.name": run.name,
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow.{run.flow_id}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": FLOW,
            }
        ],
    )


def test_a_run_that_stops_heartbeating_is_crashed_and_alerted(
    deployed: Deployed, short_window: None
) -> None:
    async def emit(events: list[Event]) -> None:
        sender = PrefectEvents(deployed.server.api_url)
        try:
            await sender.emit(events)
        finally:
            await sender.aclose()

    with deployed.server.client(), get_client(sync_client=True) as client:
        silent, finished = (
            client.create_flow_run(email_dispatch_stand_in, state=Running()) for _ in range(2)
        )
        asyncio.run(emit([heartbeat(silent), heartbeat(finished)]))
        client.set_flow_run_state(finished.id, Completed(), force=True)

        def crashed() -> State | None:
            state = client.read_flow_run(silent.id).state
            return state if state.name == "Crashed" else None

        state = wait_for(crashed, 90, "the silent run to crash")
        assert "stopped heartbeating" in state.message
        assert client.read_flow_run(finished.id).state.name == "Completed", "left alone"

    # the crash goes through the failure automation to Slack, naming the run
    alert = wait_for(
        lambda: [r.text for r in deployed.slack.requests if silent.name in r.text],
        90,
        "the Slack alert for the crashed run",
    )
    assert "Crashed" in alert[-1] and FLOW in alert[-1]


@flow(name=FLOW)
@heartbeating
def short_email_dispatch_run(label: str) -> str:
    """A run as short as an idle sweep: its heartbeat and its end are milliseconds apart."""
    return label


def _action_failures(deployed: Deployed) -> int:
    log = deployed.server.log_dir / "prefect-server.log"
    return log.read_text(errors="replace").count("Action failed") if log.exists() else 0


def test_finished_runs_are_never_acted_on(deployed: Deployed, short_window: None) -> None:
    """Short runs that heartbeat and end at once stay Completed, and the automation never
    tries to crash them (no `Action failed` in the server log)."""
    failures_before = _action_failures(deployed)
    with deployed.server.client():
        states = [short_email_dispatch_run(f"r{i}", return_state=True) for i in range(15)]
        ids = [s.state_details.flow_run_id for s in states]
        # every window that a late heartbeat could have opened has closed by now
        time.sleep(WINDOW.total_seconds() * 2 + 5)
        with get_client(sync_client=True) as client:
            names = {client.read_flow_run(i).state.name for i in ids}
    assert names == {"Completed"}
    assert _action_failures(deployed) == failures_before
