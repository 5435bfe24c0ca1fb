"""The webhook receiver under uvicorn on loopback, against the per-test database.

`receiver` has no Prefect (events disabled); `prefect_api_url` is one real Prefect server
per session (on the session PostgreSQL), shared by the tests that need events.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from taskflow_jobs import net
from taskflow_jobs.devstack import processes
from tests.support.databases import TEMPLATE, create_database, drop_database
from tests.support.receiver import Receiver, running_receiver


@pytest.fixture
def receiver(database_url: str) -> Iterator[Receiver]:
    with running_receiver(database_url) as rx:
        yield rx


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
