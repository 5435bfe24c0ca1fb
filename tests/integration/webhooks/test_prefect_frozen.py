"""A frozen Prefect server (SIGSTOP, the real one) never makes the receiver hang: jobs are
accepted as usual, `/api/events/...` answers 503 with Retry-After within its deadline."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psutil

from tests.integration.webhooks.test_durability import NOTE, SIGNUP, is_503
from tests.support.receiver import running_receiver


def server_pid(api_url: str) -> int:
    port = urlsplit(api_url).port
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return conn.pid
    raise AssertionError(f"nothing listens on port {port}")


@contextmanager
def frozen(api_url: str) -> Iterator[None]:
    group = os.getpgid(server_pid(api_url))
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


def timed(call):  # noqa: ANN001, ANN201
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_frozen_prefect_jobs_accepted_events_refused_with_retry_after(
    database_url: str, prefect_api_url: str
) -> None:
    with running_receiver(database_url, prefect_api_url=prefect_api_url) as rx:
        assert rx.post("/api/notify", {**NOTE, "idempotency_key": "warm"}).status_code == 202
        with frozen(prefect_api_url):
            signup = {**SIGNUP, "record": {**SIGNUP["record"], "id": str(uuid.uuid4())}}
            notify, notify_s = timed(lambda: rx.post("/api/notify", NOTE))
            supabase, supabase_s = timed(lambda: rx.post("/webhooks/supabase", signup))
            event, event_s = timed(
                lambda: rx.post(
                    "/api/events/report.requested",
                    {"date": "2024-05-01"},
                    headers={"webhook-id": f"r-{uuid.uuid4().hex}"},
                )
            )
            health, health_s = timed(lambda: rx.get("/healthz"))
    assert notify.status_code == 202 and notify_s < 2, (notify.status_code, notify_s)
    assert supabase.status_code == 202 and supabase_s < 2, (supabase.status_code, supabase_s)
    assert is_503(event) and event.json()["error"] == "prefect unavailable", event.text
    assert event_s < 8, f"the event answer took {event_s:.1f}s"
    assert health.json()["prefect"] == "unreachable" and health_s < 5
