"""The webhook receiver under uvicorn on loopback, and a client that signs like a sender."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import uvicorn

from taskflow_jobs import net
from taskflow_jobs.settings import load_settings
from taskflow_jobs.webhooks import create_app, store
from taskflow_jobs.webhooks.auth import sign

SECRET = "test-webhook-secret-0123456789"


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port until the block ends."""
    port = net.free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the receiver did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@dataclass
class Receiver:
    """A running receiver and a client that signs like a sender would."""

    url: str
    database_url: str
    secret: str = SECRET
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        signed: bool = True,
        headers: dict[str, str] | None = None,
        content_type: str | None = "application/json",
        timestamp: int | None = None,
    ) -> httpx.Response:
        raw = (
            body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        )
        sent: dict[str, str] = {}
        if content_type is not None:
            sent["Content-Type"] = content_type
        if signed:
            sent.update(sign(self.secret, raw, timestamp))
        sent.update(headers or {})
        return self.client.post(self.url + path, content=raw, headers=sent)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(self.url + path)


@contextmanager
def running_receiver(
    database_url: str,
    *,
    prefect_api_url: str | None = None,
    pool_timeout: float = 5.0,
    event_interval: float = 0.2,
    **settings: Any,
) -> Iterator[Receiver]:
    overrides: dict[str, Any] = {"webhook_secret": SECRET, "webhook_event_interval": event_interval}
    overrides.update(settings)
    config = load_settings(**overrides)
    pool = store.make_pool(database_url, size=4, timeout=pool_timeout)
    app = create_app(
        config,
        pool,
        prefect_api_url=prefect_api_url,
        insecure_dev=config.webhook_secret is None,
    )
    with serve_in_thread(app) as url:
        rx = Receiver(url, database_url, secret=SECRET if config.webhook_secret else "")
        try:
            yield rx
        finally:
            rx.client.close()


def count(conn: psycopg.Connection, sql: str, *params: Any) -> int:
    return conn.execute(sql, params).fetchone()["count"]


def nothing_stored(conn: psycopg.Connection) -> bool:
    """No job, no idempotency key, no receipt."""
    return (
        count(conn, "SELECT count(*) FROM jobs.messages") == 0
        and count(conn, "SELECT count(*) FROM jobs.idempotency_keys") == 0
        and count(conn, "SELECT count(*) FROM jobs.webhook_receipts") == 0
    )
