"""End-to-end fixtures: ONE real Prefect server per session, deployed with `taskflow-jobs
deploy`, and a process worker running the deployments.

Reuse them:

- `prefect_server` (session): a Prefect server on database `prefect_e2e` of the test
  PostgreSQL cluster (asyncpg), on a free port. `.api_url`, `.env` (PREFECT_API_URL and
  PREFECT_HOME for subprocesses), `.supervisor`, `.log_dir`. In-process clients and flows
  talk to it inside `with prefect_server.client():` (or use the `prefect_api` fixture).
- `prefect_api` (function): `prefect_server` with PREFECT_API_URL set for this process,
  and a fresh TASKFLOW_BLOCK_PREFIX so flows run in-process ignore the deployed blocks.
- `deployed` (session): `taskflow-jobs deploy` done against `prefect_server` and a process
  worker started on pool `taskflow-jobs`. `.database_url` is the app database the deployed
  flows use (through the `taskflow-database` SqlAlchemyConnector block: the worker has no
  DATABASE_URL nor SLACK_WEBHOOK_URL), `.slack` the Slack stub they post to,
  `.deploy_output`, `.worker_env`, `.run(name, parameters, timeout)` runs a deployment
  through the worker and returns the final flow run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskflow_jobs import net
from taskflow_jobs.devstack import processes
from taskflow_jobs.devstack.up import wait_for_worker
from tests.support.databases import TEMPLATE, create_database, drop_database
from tests.support.prefect_stack import PROJECT_DIR, Deployed, PrefectServer, socket_dir
from tests.support.slack_stub import start_slack_stub

PREFECT_DATABASE = "prefect_e2e"
APP_DATABASE = "e2e_app"


@pytest.fixture(scope="session")
def prefect_server(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefectServer]:
    root = tmp_path_factory.mktemp("prefect")
    create_database(pg_admin_url, PREFECT_DATABASE)
    asyncpg_url = (
        f"postgresql+asyncpg://postgres@/{PREFECT_DATABASE}?host={socket_dir(pg_admin_url)}"
    )
    env = processes.prefect_server_env(root / "home", asyncpg_url, net.free_port())
    supervisor = processes.Supervisor(root / "logs")
    try:
        processes.start_prefect_server(supervisor, env, timeout=120)
    except Exception:
        supervisor.stop()
        raise
    client_env = {k: v for k, v in env.items() if k != "PREFECT_SERVER_DATABASE_CONNECTION_URL"}
    yield PrefectServer(env["PREFECT_API_URL"], client_env, supervisor, root / "logs")
    with contextlib.suppress(Exception):  # ship in-process run logs while the server is up
        from prefect.logging.handlers import APILogHandler

        APILogHandler.flush()
    supervisor.stop()
    drop_database(pg_admin_url, PREFECT_DATABASE)


@pytest.fixture
def prefect_api(
    prefect_server: PrefectServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PrefectServer]:
    """The session server for in-process flows, with blocks of this test's own prefix."""
    monkeypatch.setenv("TASKFLOW_BLOCK_PREFIX", f"t{uuid.uuid4().hex[:10]}")
    with prefect_server.client():
        yield prefect_server


@pytest.fixture(scope="session")
def deployed(
    prefect_server: PrefectServer,
    pg_admin_url: str,
    template_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployed]:
    database_url = create_database(pg_admin_url, APP_DATABASE, TEMPLATE)
    slack = start_slack_stub()
    data_dir = tmp_path_factory.mktemp("e2e-data")
    deploy_env = {
        **os.environ,
        **prefect_server.env,
        "DATABASE_URL": database_url,
        "SLACK_WEBHOOK_URL": slack.url,
        "TASKFLOW_DATA_DIR": str(data_dir),
        "TASKFLOW_BLOCK_PREFIX": "taskflow",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "taskflow-jobs"), "deploy"],
        env=deploy_env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        slack.stop()
        raise RuntimeError(f"taskflow-jobs deploy failed:\n{output}")

    # No DATABASE_URL / SLACK_WEBHOOK_URL: the flows must find them in the blocks.
    worker_env = {
        **prefect_server.env,
        "DATABASE_URL": "",
        "SLACK_WEBHOOK_URL": "",
        "TASKFLOW_DATA_DIR": str(data_dir),
        "TASKFLOW_BLOCK_PREFIX": "taskflow",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    argv = [
        sys.executable,
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        "taskflow-jobs",
        "--type",
        "process",
        "--limit",
        "4",
    ]
    worker = prefect_server.supervisor.start("worker", argv, worker_env)
    try:
        wait_for_worker(prefect_server.api_url, prefect_server.supervisor)
        yield Deployed(prefect_server, database_url, slack, output, worker_env, worker)
    finally:
        if worker.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, 15)
            try:
                worker.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.process.pid, 9)
        slack.stop()
