"""`consume`'s /metrics (CONSUME_METRICS_PORT, METRICS_TOKEN) on a real consume process:
the email counters and the send-time histogram agree with what the SendGrid stub saw, and
the queue gauges with the database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from taskflow_jobs import net
from taskflow_jobs.devstack.sendgrid_stub import Reply, StubServer
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.e2e.email.test_consume import Consumers, counts, wait_until
from tests.support.dispatch_helpers import signup
from tests.support.prometheus import scrape, value

TOKEN = "consume-metrics-token-77"


@pytest.fixture
def processes(email_env: dict[str, str], tmp_path: Path) -> Iterator[Consumers]:
    pool = Consumers(email_env, tmp_path)
    yield pool
    pool.stop_all()


def test_consume_metrics_match_the_provider_and_the_queue(
    conn: psycopg.Connection, processes: Consumers, sendgrid: StubServer
) -> None:
    seen: Counter[str] = Counter()

    def answer(body: dict) -> Reply:
        to = body["personalizations"][0]["to"][0]["email"]
        seen[to] += 1
        if to.startswith("dead"):
            return Reply(400)
        if to.startswith("flaky") and seen[to] == 1:
            return Reply(500)
        return Reply(202)

    sendgrid.stub.script = answer
    for prefix, n in (("ok", 6), ("dead", 2), ("flaky", 2)):
        for i in range(n):
            signup(conn, f"{prefix}{i}@example.com", f"{prefix} {i}")
    port = net.free_port()
    process = processes.start(CONSUME_METRICS_PORT=str(port), METRICS_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(
        lambda: counts(conn)["archived"] == 8 and counts(conn)["dead"] == 2, 90, "all settled"
    )
    assert process.poll() is None

    assert httpx.get(url).status_code == 401
    samples = scrape(url, TOKEN)
    labels = {"type": "welcome_email", "provider": "sendgrid"}
    assert value(samples, "taskflow_emails_total", **labels, outcome="sent") == 8
    assert value(samples, "taskflow_emails_total", **labels, outcome="retried") == 2
    assert value(samples, "taskflow_emails_total", **labels, outcome="dead_lettered") == 2
    assert value(samples, "taskflow_emails_total", **labels, outcome="skipped") == 0
    sends = len(sendgrid.stub.received)
    assert sends == 12
    assert value(samples, "taskflow_send_seconds_count", provider="sendgrid") == sends
    assert value(samples, "taskflow_send_seconds_bucket", provider="sendgrid", le="+Inf") == sends
    q = {"queue": EMAIL_QUEUE}
    assert value(samples, "taskflow_queue_metrics_up") == 1
    assert value(samples, "taskflow_dead_letters", **q) == 2
    for state in ("visible", "in_flight", "delayed"):
        assert value(samples, "taskflow_queue_depth", **q, state=state) == 0
    assert ("taskflow_queue_depth", frozenset({**q, "state": "visible"}.items())) in samples
