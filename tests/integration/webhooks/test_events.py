"""Events reach a real Prefect server, and the documented trigger turns one into a run.

One Prefect server per session (`prefect_api_url`); events are read back through the
Prefect client. Running the triggered flow needs a worker and the daily-stats deployment
(the e2e suite); here the run is observed being created with the right parameters.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

from taskflow_jobs import net
from tests.support.receiver import Receiver, running_receiver
from tests.unit.test_webhook_triggers import triggers_of

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], within: float = 60.0) -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def read_events(api_url: str, name: str, since: datetime) -> list[Any]:
    with SyncPrefectClient(api_url) as client:
        page = client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)
            ),
            limit=50,
        )
    return list(page.events)


@pytest.fixture
def events_receiver(database_url: str, prefect_api_url: str) -> Iterator[Receiver]:
    with running_receiver(database_url, prefect_api_url=prefect_api_url) as rx:
        yield rx


def test_report_requested_reaches_prefect(events_receiver: Receiver, prefect_api_url: str) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    response = events_receiver.post(
        "/api/events/report.requested", {"date": "2024-05-01", "requested_by": "ops"}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["event"] == "taskflow.report.requested" and answer["duplicate"] is False

    def mine() -> list[Any]:
        found = read_events(prefect_api_url, "taskflow.report.requested", since)
        return [e for e in found if str(e.id) == answer["event_id"]]

    [event] = eventually(mine)
    assert event.payload == {"date": "2024-05-01", "requested_by": "ops"}
    assert event.resource.id == "taskflow.webhooks"


def test_enqueued_jobs_are_announced_in_few_events(database_url: str, prefect_api_url: str) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    with running_receiver(database_url, prefect_api_url=prefect_api_url, event_interval=5) as rx:
        job_ids = []
        for n in range(3):
            body = {
                "type": "notification",
                "data": {"to": "a@example.com", "subject": f"#{n}", "body": "b"},
            }
            response = rx.post("/api/notify", body)
            assert response.status_code == 202
            job_ids.append(response.json()["job_id"])
        # leaving the block shuts the receiver down, which announces what is pending

    def announced() -> list[Any]:
        found = read_events(prefect_api_url, "taskflow.email.enqueued", since)
        mine = [e for e in found if set(e.payload["job_ids"]) & set(job_ids)]
        covered = {i for e in mine for i in e.payload["job_ids"]}
        return mine if covered >= set(job_ids) else []

    events = eventually(announced)
    assert 1 <= len(events) <= 2  # the first job at once, the rest coalesced
    assert sum(e.payload["count"] for e in events) == 3
    assert all(e.payload["queue"] == "email_notifications" for e in events)


def test_healthz_reports_both(events_receiver: Receiver) -> None:
    response = events_receiver.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "prefect": "ok"}


class CountingPrefect(BaseHTTPRequestHandler):
    """A stand-in Prefect API that counts the events it is sent."""

    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        CountingPrefect.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_retried_delivery_is_emitted_once(database_url: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", net.free_port()), CountingPrefect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    CountingPrefect.received = []
    api = f"http://127.0.0.1:{server.server_address[1]}/api"
    try:
        with running_receiver(database_url, prefect_api_url=api) as rx:
            answers = []
            for shift in range(3):  # the sender's retries, each signed afresh
                response = rx.post(
                    "/api/events/report.requested",
                    {"date": "2024-05-02"},
                    headers={"webhook-id": "msg_2024-05-02"},
                    timestamp=int(time.time()) - shift,
                )
                assert response.status_code == 202
                answers.append(response.json())
            other = rx.post("/api/events/report.requested", {}, headers={"webhook-id": "msg_2"})
            assert other.status_code == 202
    finally:
        server.shutdown()
    assert [a["duplicate"] for a in answers] == [False, True, True]
    assert len({a["event_id"] for a in answers}) == 1
    assert len(CountingPrefect.received) == 2  # one per delivery id


async def _deployment_with_documented_trigger(api_url: str) -> uuid.UUID:
    """A daily-stats deployment (no work pool needed to create runs) with the trigger from
    prefect.yaml."""
    from prefect.cli.deploy._triggers import DeploymentTriggerAdapter

    async with PrefectClient(api_url) as client:
        flow_id = await client.create_flow_from_name(f"daily-stats-{uuid.uuid4().hex[:6]}")
        deployment_id = await client.create_deployment(
            flow_id=flow_id,
            name="daily-stats",
            parameter_openapi_schema={
                "type": "object",
                "properties": {"date": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            },
        )
        [spec] = triggers_of("daily-stats")
        trigger = DeploymentTriggerAdapter.validate_python(dict(spec))
        trigger.set_deployment_id(deployment_id)
        await client.create_automation(trigger.as_automation())
    return deployment_id


def test_documented_trigger_turns_report_requested_into_a_daily_stats_run(
    events_receiver: Receiver, prefect_api_url: str
) -> None:
    deployment_id = asyncio.run(_deployment_with_documented_trigger(prefect_api_url))

    def runs() -> list[Any]:
        with SyncPrefectClient(prefect_api_url) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )

    date = "2024-05-03"
    last_sent = 0.0

    def with_date() -> list[Any]:
        nonlocal last_sent
        if time.monotonic() - last_sent > 15:  # again, if the automation was not loaded yet
            delivery = {"webhook-id": f"report-{uuid.uuid4().hex}"}
            response = events_receiver.post(
                "/api/events/report.requested", {"date": date}, headers=delivery
            )
            assert response.status_code == 202
            last_sent = time.monotonic()
        return [r for r in runs() if r.parameters == {"date": date}]

    run = eventually(with_date, within=90)[0]
    assert run.state.type.value in ("SCHEDULED", "PENDING")  # waiting for a worker
