"""Automations as code: the Prefect UI shows them and an operator can edit or pause them.

- a Slack notification when a flow run of ours fails or crashes;
- a Slack notification when dead letters pile up (N `taskflow.email.dead-lettered`
  events within a window);
- runs that stop heartbeating are marked Crashed (which then alerts through the first).

Notifications go through a Prefect notification block (`<prefix>-alerts`, a custom
webhook posting Slack's JSON, created from SLACK_WEBHOOK_URL), so the automation's action
names a block the UI can open and edit. Without it only the heartbeat automation exists.
`apply` is idempotent: automations are matched by name and updated in place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from prefect.automations import AutomationCore
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from taskflow_jobs.monitoring.prefect_api import FLOW_NAMES
from taskflow_jobs.settings import Settings

PREFIX = "taskflow-jobs: "
FAILED = PREFIX + "flow run failed or crashed"
DEAD_LETTERS = PREFIX + "dead letters piling up"
ZOMBIES = PREFIX + "mark unresponsive runs crashed"

FAILURE_BODY = (
    "{{ flow.name }} run {{ flow_run.name }} is {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}"
)
DEAD_LETTER_BODY = (
    "Emails are being dead-lettered ({threshold} or more within {window}). The latest: "
    "message {{{{ event.payload.message_id }}}} ({{{{ event.payload.type }}}}): "
    "{{{{ event.payload.reason }}}}. "
    "See `taskflow-jobs dlq list`, then `taskflow-jobs dlq redrive`."
)


@dataclass(frozen=True)
class AlertPolicy:
    dead_letter_threshold: int = 5
    dead_letter_window: timedelta = timedelta(minutes=15)
    heartbeat_timeout: timedelta = timedelta(seconds=90)


def definitions(slack_block_id: UUID | None, policy: AlertPolicy) -> list[AutomationCore]:
    ours = ResourceSpecification(
        {"prefect.resource.role": "flow", "prefect.resource.name": list(FLOW_NAMES)}
    )
    found: list[AutomationCore] = [
        AutomationCore(
            name=ZOMBIES,
            description="Flow runs whose heartbeats stop (machine lost, process killed) "
            "are marked Crashed. Needs PREFECT_FLOWS_HEARTBEAT_FREQUENCY on the worker.",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={
                    "prefect.flow-run.heartbeat",
                    "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed",
                },
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                match_related=ours,
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=policy.heartbeat_timeout,
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED,
                    message="Marked crashed by taskflow-jobs: the run stopped heartbeating.",
                )
            ],
        )
    ]
    if slack_block_id is None:
        return found
    found += [
        AutomationCore(
            name=FAILED,
            description="Slack alert for every failed or crashed run of a taskflow-jobs flow.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                match_related=ours,
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[
                SendNotification(
                    block_document_id=slack_block_id,
                    subject="taskflow-jobs: {{ flow.name }} {{ flow_run.state.name }}",
                    body=FAILURE_BODY,
                )
            ],
        ),
        AutomationCore(
            name=DEAD_LETTERS,
            description=f"Slack alert when {policy.dead_letter_threshold} or more emails are "
            f"dead-lettered within {policy.dead_letter_window}.",
            trigger=EventTrigger(
                expect={"taskflow.email.dead-lettered"},
                match=ResourceSpecification({"prefect.resource.id": ["taskflow.email.*"]}),
                posture=Posture.Reactive,
                threshold=policy.dead_letter_threshold,
                within=policy.dead_letter_window,
            ),
            actions=[
                SendNotification(
                    block_document_id=slack_block_id,
                    subject="taskflow-jobs: emails dead-lettered",
                    body=DEAD_LETTER_BODY.format(
                        threshold=policy.dead_letter_threshold, window=policy.dead_letter_window
                    ),
                )
            ],
        ),
    ]
    return found


def policy_from(settings: Settings) -> AlertPolicy:
    return AlertPolicy(
        dead_letter_threshold=settings.alert_dead_letter_threshold,
        dead_letter_window=timedelta(seconds=settings.alert_dead_letter_window),
        heartbeat_timeout=timedelta(seconds=settings.alert_heartbeat_timeout),
    )


def slack_block_id(name: str) -> UUID | None:
    """The id of the notification block automations post through, if it exists."""

    try:
        block = CustomWebhookNotificationBlock.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError:
        return None
    return block._block_document_id  # type: ignore[union-attr]


def apply_for(settings: Settings, slack_block: str) -> dict[str, str]:
    """Create or update our automations on the current Prefect API."""

    wanted = definitions(slack_block_id(slack_block), policy_from(settings))

    async def run() -> dict[str, str]:
        async with get_client() as client:
            return await apply(client, wanted)

    return asyncio.run(run())


async def apply(client: PrefectClient, wanted: list[AutomationCore]) -> dict[str, str]:
    """Create or update each automation by name; returns {name: "created" | "updated"}."""
    result: dict[str, str] = {}
    for automation in wanted:
        existing = await client.read_automations_by_name(automation.name)
        if existing:
            await client.update_automation(existing[0].id, automation)
            for extra in existing[1:]:
                await client.delete_automation(extra.id)
            result[automation.name] = "updated"
        else:
            await client.create_automation(automation)
            result[automation.name] = "created"
    return result
