"""The heartbeat automation on the real server: a running flow run of ours that sent a
heartbeat and then fell silent (its machine lost, its process killed) is marked Crashed,
and that alerts Slack; a run that finished after its heartbeat is left as it ended.

Deployed runs heartbeat every 30 s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY in prefect.yaml) and
the automation waits ALERT_HEARTBEAT_TIMEOUT (90 s). Here the window is 10 s, and the
heartbeats are the events a worker's runner sends (same resource, same related flow), so
the test does not wait for a real process to go quiet. The deployed window is restored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Completed, Running

from taskflow_jobs import automations
from taskflow_jobs.webhooks.events import PrefectEvents
from tests.e2e.conftest import Deployed
from tests.support.waiting import wait_for

WINDOW = timedelta(seconds=10)


@flow(name="email-dispatch")
def email_dispatch_stand_in() -> None:
    """Only its name matters: runs of it are runs of the `email-dispatch` flow."""


def zombie_automation(policy: automations.AlertPolicy, block_id: uuid.UUID | None):
    wanted = automations.definitions(block_id, policy)
    [found] = [a for a in wanted if a.name == automations.ZOMBIES]
    return found


@pytest.fixture
def short_window(deployed: Deployed) -> Iterator[None]:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    async def apply(policy: automations.AlertPolicy) -> None:
        async with get_client() as client:
            await automations.apply(client, [zombie_automation(policy, block_id)])

    with deployed.server.client():
        block = CustomWebhookNotificationBlock.load("taskflow-alerts", _sync=True)
        block_id = block._block_document_id
        asyncio.run(apply(automations.AlertPolicy(heartbeat_timeout=WINDOW)))
        try:
            yield
        finally:
            asyncio.run(apply(automations.AlertPolicy()))


async def start_run(client) -> object:  # noqa: ANN001
    run = await client.create_flow_run(email_dispatch_stand_in, state=Running())
    return run


def heartbeat(run) -> dict:  # noqa: ANN001
    """What a worker's runner emits for a run it is executing."""
    return {
        "id": str(uuid.uuid4()),
        "event": "prefect.flow-run.heartbeat",
        "resource": {
            "prefect.resource.id": f"prefect.flow-run.{run.id}",
            "prefect.resource.name": run.name,
        },
        "related": [
            {
                "prefect.resource.id": f"prefect.flow.{run.flow_id}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": "email-dispatch",
            }
        ],
    }


def test_a_run_that_stops_heartbeating_is_crashed_and_alerted(
    deployed: Deployed, short_window: None
) -> None:
    from prefect.events import Event

    async def scenario() -> tuple[object, object]:
        events = PrefectEvents(deployed.server.api_url)
        try:
            async with get_client() as client:
                silent = await start_run(client)
                finished = await start_run(client)
                await events.emit([Event.model_validate(heartbeat(r)) for r in (silent, finished)])
                await client.set_flow_run_state(finished.id, Completed(), force=True)
        finally:
            await events.aclose()
        return silent, finished

    async def state_of(run_id: uuid.UUID) -> str:
        async with get_client() as client:
            return (await client.read_flow_run(run_id)).state.name

    with deployed.server.client():
        silent, finished = asyncio.run(scenario())
        crashed = wait_for(
            lambda: asyncio.run(state_of(silent.id)) == "Crashed", 90, "the silent run to crash"
        )
        assert crashed
        assert asyncio.run(state_of(finished.id)) == "Completed", "a finished run is left alone"

        async def message() -> str:
            async with get_client() as client:
                return (await client.read_flow_run(silent.id)).state.message

        assert "stopped heartbeating" in asyncio.run(message())

    # the crash goes through the failure automation to Slack, naming the run
    alert = wait_for(
        lambda: [r.text for r in deployed.slack.requests if silent.name in r.text],
        90,
        "the Slack alert for the crashed run",
    )
    assert "Crashed" in alert[-1] and "email-dispatch" in alert[-1]
