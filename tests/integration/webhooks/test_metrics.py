"""GET /metrics of the receiver: request counters by route template and status, and the
queue gauges read from the database at scrape time; behind METRICS_TOKEN when it is set."""

from __future__ import annotations

import time

import httpx
import psycopg

from taskflow_jobs.settings import EMAIL_QUEUE
from tests.support.prometheus import parse, scrape, value
from tests.support.receiver import running_receiver

TOKEN = "metrics-token-4f1c2b"
NOTE = {"type": "notification", "data": {"to": "a@example.com", "subject": "s", "body": "b"}}


def test_receiver_metrics_count_requests_and_read_the_queue(
    database_url: str, conn: psycopg.Connection
) -> None:
    with running_receiver(database_url, metrics_token=TOKEN) as rx:
        url = rx.url + "/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        before = scrape(url, TOKEN)
        now = int(time.time())  # once: a second tick mid-loop would repeat a signature (a replay)
        for shift in range(5):
            assert rx.post("/api/notify", NOTE, timestamp=now - shift).status_code == 202
        assert rx.post("/api/notify", NOTE, signed=False).status_code == 401
        assert rx.post("/api/notify", {"type": "nope"}).status_code == 422
        assert rx.get("/no/such/route").status_code == 404
        conn.execute("UPDATE jobs.messages SET visible_at = now() + interval '1 hour'"
                     " WHERE id = (SELECT min(id) FROM jobs.messages)")  # fmt: skip
        response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        after = parse(response.text)
        assert TOKEN not in response.text

    def delta(**labels: str) -> float:
        name = "taskflow_webhook_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(route="/api/notify", status="202") == 5
    assert delta(route="/api/notify", status="401") == 1
    assert delta(route="/api/notify", status="422") == 1
    assert delta(route="unmatched", status="404") == 1
    assert value(after, "taskflow_queue_metrics_up") == 1
    q = {"queue": EMAIL_QUEUE}
    assert value(after, "taskflow_queue_depth", **q, state="visible") == 4
    assert value(after, "taskflow_queue_depth", **q, state="delayed") == 1
    assert value(after, "taskflow_queue_depth", **q, state="in_flight") == 0
    assert value(after, "taskflow_dead_letters", **q) == 0
    age = value(after, "taskflow_queue_oldest_age_seconds", **q)
    expected = conn.execute(
        "SELECT extract(epoch FROM now() - min(enqueued_at)) AS a FROM jobs.messages"
    ).fetchone()["a"]
    assert 0 < age <= float(expected)


def test_a_scrape_without_the_database_says_so_and_still_answers(database_url: str) -> None:
    with running_receiver(database_url) as rx:
        open_scrape = scrape(rx.url + "/metrics")  # no METRICS_TOKEN: open
        assert value(open_scrape, "taskflow_queue_metrics_up") == 1
    gone = database_url.replace("/t_", "/missing_")
    with running_receiver(gone, pool_timeout=1.0) as rx:
        samples = scrape(rx.url + "/metrics")
    assert value(samples, "taskflow_queue_metrics_up") == 0
    assert not [key for key in samples if key[0] == "taskflow_queue_depth"]
