"""Flow `email-dispatch`: send queued emails in batches, one Prefect task per batch.

Runs two ways:
- `mode="drain"` (deployment: every minute as a safety sweep, and on events): send until
  the queue has nothing visible or the time budget ends.
- `mode="listen"` (started by `taskflow-jobs consume` for each burst of work): also wait
  for NOTIFY and end after an idle period, so a steady stream costs one flow run.

The work is in `taskflow_jobs.email`; this module wires it to Prefect: task retries for
infrastructure failures, an artifact per run, and at its end the dead-letter events of
the outbox (written by the settle itself, so they survive an outage of Prefect).
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import TaskRun
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.tasks import Task, exponential_backoff

from flows.common import flow_settings
from taskflow_jobs.email.outcomes import Action, DispatchStats
from taskflow_jobs.email.worker.batch import INFRASTRUCTURE_ERRORS, Dispatcher, Ticket
from taskflow_jobs.email.worker.run import RunPlan, run_dispatch
from taskflow_jobs.email.worker.sharing import dispatcher_for_run
from taskflow_jobs.jobs import outbox
from taskflow_jobs.monitoring.heartbeat import heartbeating
from taskflow_jobs.monitoring.prefect_api import EMAIL_DISPATCH

DEAD_LETTER_EVENT = outbox.DEAD_LETTER_EVENT
DEAD_LETTERED = "DeadLettered"  # the name of the final state of a run that dead-lettered
ARTIFACT_KEY = "email-dispatch"


def infrastructure_failure(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry a batch only when the database or the provider failed, not on a bug."""
    return isinstance(state.data, INFRASTRUCTURE_ERRORS)


@task(
    name="send-batch",
    task_run_name="batch-{number}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=infrastructure_failure,
)
async def send_batch(
    dispatcher: Dispatcher, window: float, number: int, stats: DispatchStats, ticket: Ticket
) -> dict[str, Any]:
    """Claim, send and settle one batch (a retry claims a fresh one)."""
    report = await dispatcher.run_batch(window, stats, ticket)
    return report.summary()


def publish_dead_letter_events(url: str) -> int:
    """Publish the outbox's dead-letter events (this run's and any an outage left)."""
    with get_client(sync_client=True) as client:

        def post(events: list[dict[str, Any]]) -> None:
            client.request("POST", "/events", json=events).raise_for_status()

        run = {
            "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": str(flow_run.name),
        }
        return outbox.publish(url, post, related=[run] if flow_run.id else None)


def _run_name() -> str:
    params = flow_run.parameters
    who = params.get("consumer") or params.get("mode", "drain")
    # the time the run was created for, not the time a process got to it
    return f"{who} {flow_run.scheduled_start_time.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def consumer_label() -> str:
    return f"consume@{socket.gethostname()}:{os.getpid()}"


@flow(
    name=EMAIL_DISPATCH,
    flow_run_name=_run_name,
    persist_result=False,
    description="Send queued emails (welcome, task assigned, notifications) in batches.",
)
@heartbeating
async def email_dispatch(
    mode: Literal["drain", "listen"] = "drain",
    time_budget: float | None = None,
    concurrency: int | None = None,
    idle_timeout: float | None = None,
    consumer: str | None = None,
) -> dict[str, Any]:
    """Dispatch queued emails until the queue is drained (or idle) or the budget ends."""
    settings = flow_settings()
    logger = get_run_logger()
    listen = mode == "listen"
    plan = RunPlan(
        budget=time_budget
        or (settings.email_consume_budget if listen else settings.email_time_budget),
        concurrency=concurrency or settings.email_concurrency,
        listen=listen,
        idle_timeout=settings.email_idle_timeout if idle_timeout is None else idle_timeout,
        window=settings.email_batch_window,
        poll_interval=settings.email_poll_interval,
    )
    batch = send_batch.with_options(
        retries=settings.email_task_retries,
        retry_delay_seconds=exponential_backoff(settings.email_task_retry_delay),
        retry_jitter_factor=0.5,
    )
    stats = DispatchStats()
    url: str | None = None
    try:
        async with dispatcher_for_run(settings, listen=listen) as dispatcher:
            url = dispatcher.url

            async def run_batch(window: float, number: int, ticket: Ticket) -> dict[str, Any]:
                return await batch(dispatcher, window, number, stats, ticket)

            await run_dispatch(dispatcher, run_batch, plan, stats)
    finally:
        summary = stats.summary()
        logger.info("email dispatch: %s", summary)
        await acreate_table_artifact(
            table=stats.table(),
            key=ARTIFACT_KEY,
            description=(
                f"{summary['sent']} sent, {summary['retried']} retried, "
                f"{summary['dead-lettered']} dead-lettered, {summary['skipped']} skipped, "
                f"{summary['released']} released "
                f"in {summary['batches']} batches ({summary['failed_batches']} failed)"
            ),
        )
        if url is not None:
            published = await asyncio.to_thread(publish_dead_letter_events, url)
            if published:
                logger.info("published %d dead-letter event(s)", published)
    dead = summary["dead-lettered"]
    if dead:
        # A failed-type state the run history shows in red; the automations alert on
        # dead letters by count (taskflow.email.dead-lettered), not on this state.
        first = next((o.error for o in stats.problems if o.action is Action.DEAD_LETTERED), "")
        return Failed(  # type: ignore[return-value]
            name=DEAD_LETTERED,
            message=f"{dead} email(s) dead-lettered (first: {first}); see this run's "
            "artifact and `taskflow-jobs dlq list`",
            data=summary,
        )
    return summary


async def dispatch_summary(state: State) -> dict[str, Any]:
    """The run's summary; a run that only dead-lettered emails did its job. Other
    failures raise."""
    if state.is_failed() and state.name == DEAD_LETTERED:
        return await state.result(raise_on_failure=False)  # type: ignore[misc]
    return await state.result()
