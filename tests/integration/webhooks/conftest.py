"""The webhook receiver under uvicorn on loopback, against the per-test database.

`receiver` has no Prefect (events disabled); `prefect_api_url` is one real Prefect server
per session (on the session PostgreSQL), shared by the tests that need events.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from taskflow_jobs import db, net
from taskflow_jobs.devstack import processes
from taskflow_jobs.settings import load_settings
from taskflow_jobs.webhooks import create_app, store
from taskflow_jobs.webhooks.auth import sign
from tests.conftest import TEMPLATE, create_database, drop_database

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


@pytest.fixture
def receiver(database_url: str) -> Iterator[Receiver]:
    with running_receiver(database_url) as rx:
        yield rx


def count(conn: psycopg.Connection, sql: str, *params: Any) -> int:
    return conn.execute(sql, params).fetchone()["count"]


def nothing_stored(conn: psycopg.Connection) -> bool:
    """No job, no idempotency key, no receipt."""
    return (
        count(conn, "SELECT count(*) FROM jobs.messages") == 0
        and count(conn, "SELECT count(*) FROM jobs.idempotency_keys") == 0
        and count(conn, "SELECT count(*) FROM jobs.webhook_receipts") == 0
    )


# --- a real Prefect server, once per session -----------------------------------------------


@pytest.fixture(scope="session")
def prefect_api_url(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on the session PostgreSQL (database prefect_webhooks)."""
    name = f"prefect_webhooks_{os.getpid()}"
    admin = psycopg.conninfo.conninfo_to_dict(pg_admin_url)
    create_database(pg_admin_url, name)
    asyncpg_url = f"postgresql+asyncpg://postgres@/{name}?host={admin['host']}"
    home: Path = tmp_path_factory.mktemp("prefect-home")
    env = processes.prefect_server_env(home, asyncpg_url, net.free_port())
    supervisor = processes.Supervisor(home / "logs")
    try:
        processes.start_prefect_server(supervisor, env, timeout=240)
        yield env["PREFECT_API_URL"]
    finally:
        supervisor.stop()
        drop_database(pg_admin_url, name)


@pytest.fixture(scope="module")
def module_database_url(pg_admin_url: str, template_url: str) -> Iterator[str]:
    """A migrated database shared by one module (for hypothesis, which dislikes
    function-scoped fixtures)."""
    name = f"m_{os.getpid()}_{time.monotonic_ns()}"
    url = create_database(pg_admin_url, name, TEMPLATE)
    yield url
    drop_database(pg_admin_url, name)


def database_name(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"]


def admin_connect(pg_admin_url: str) -> psycopg.Connection:
    return db.connect(pg_admin_url, autocommit=True)
