"""The `email-dispatch` flow against a real Prefect server: one task run per batch, a table
artifact, a `taskflow.email.dead-lettered` event per dead letter, and Prefect retries
(then a failed run) when the provider is unreachable, with nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

from flows.email_dispatch import (
    DEAD_LETTER_EVENT,
    DEAD_LETTERED,
    dispatch_summary,
    email_dispatch,
)
from taskflow_jobs.jobs import queue
from taskflow_jobs.net import free_port
from taskflow_jobs.settings import EMAIL_QUEUE, get_settings
from tests.support.dispatch_helpers import signup, state


@pytest.fixture
def flow_env(email_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in email_env.items():
        if not name.startswith("PREFECT_"):
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def task_runs(flow_run_id: Any) -> list:
    async with get_client() as client:
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


async def eventually(probe, timeout: float = 30.0):
    """The server records task runs and events asynchronously: poll until `probe` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.3)


def test_flow_sends_in_batches_publishes_an_artifact_and_dead_letter_events(
    conn: psycopg.Connection, flow_env: None, sendgrid
) -> None:
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(25)]
    poison = queue.send(conn, EMAIL_QUEUE, {"type": "sms_blast"})
    started = time.time()

    async def scenario():
        state_ = await email_dispatch(mode="drain", return_state=True)
        assert state_.is_failed() and state_.name == DEAD_LETTERED, "red in the run history"
        assert "1 email(s) dead-lettered" in state_.message and "sms_blast" in state_.message
        summary = await dispatch_summary(state_)
        flow_run_id = state_.state_details.flow_run_id

        async def one_task_run_per_batch():
            runs = await task_runs(flow_run_id)
            done = len(runs) == summary["batches"] and all(r.state.is_completed() for r in runs)
            return runs if done else None

        runs = await eventually(one_task_run_per_batch)
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

            async def dead_letter_events():
                page = await client.read_events(
                    EventFilter(
                        event=EventNameFilter(name=[DEAD_LETTER_EVENT]),
                        occurred=EventOccurredFilter(since=_dt(started - 5)),
                    ),
                    limit=50,
                )
                return [
                    e
                    for e in page.events
                    if any(r.id == f"prefect.flow-run.{flow_run_id}" for r in e.related)
                ]

            events = await eventually(dead_letter_events)
        return summary, runs, artifacts, events

    summary, runs, artifacts, events = asyncio.run(scenario())

    assert summary["sent"] == 25 and summary["dead-lettered"] == 1
    # 26 messages in batches of 10: three batches, or a few more when two concurrent
    # batches race for the tail of the queue; never one per message
    assert 3 <= summary["batches"] <= 6
    assert runs is not None, "one Prefect task run per batch, not one per message"
    assert {r.name for r in runs} == {f"batch-{i}" for i in range(1, summary["batches"] + 1)}
    assert all(state(conn, i)["state"] == "archived" for i in ids)

    (artifact,) = artifacts
    assert artifact.key == "email-dispatch" and artifact.type == "table"
    assert "25 sent" in artifact.description and "1 dead-lettered" in artifact.description
    assert "unknown message type 'sms_blast'" in str(artifact.data)
    assert "user0@example.com" not in str(artifact.data), "no recipient addresses in artifacts"

    (event,) = events
    assert event.resource.id == f"taskflow.email.{poison}"
    assert event.payload["type"] == "sms_blast" and event.payload["attempt"] == 1
    assert "unknown message type" in event.payload["reason"]


def test_unreachable_provider_is_retried_by_prefect_then_fails_the_run_losing_nothing(
    conn: psycopg.Connection, flow_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("EMAIL_TASK_RETRIES", "2")
    monkeypatch.setenv("EMAIL_TASK_RETRY_DELAY", "0.1")
    get_settings.cache_clear()
    ids = [signup(conn, f"user{i}@example.com")[1] for i in range(3)]

    async def scenario():
        state_ = await email_dispatch(mode="drain", return_state=True)
        runs = await eventually(lambda: _failed_runs(state_.state_details.flow_run_id), timeout=30)
        return state_, runs

    final, runs = asyncio.run(scenario())
    assert final.is_failed()
    assert "cannot connect to SendGrid" in final.message
    # usually one batch; a second concurrent batch can pick up what the first released
    assert 1 <= len(runs) <= 2
    assert all(run.run_count == 3 for run in runs), "each batch ran once, then 2 Prefect retries"
    for message_id in ids:  # released each time: no attempt used, no error recorded
        pending = state(conn, message_id)
        assert pending["state"] == "pending" and pending["claim_token"] is None
        assert pending["attempt"] == 0 and pending["errors"] == []


async def _failed_runs(flow_run_id: Any) -> list | None:
    runs = await task_runs(flow_run_id)
    return runs if runs and all(r.state.is_failed() for r in runs) else None


def _dt(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)
