"""Prefect's database stays bounded: the server `up` starts vacuums old flow runs, their
logs and their artifacts (TASKFLOW_RUN_RETENTION_DAYS), not only events.

A Prefect server of its own, with a retention of 90 minutes (Prefect needs more than an hour) and a
vacuum loop of two seconds. Runs are made to look old by moving their end time back in
the server's own database; the vacuum service does the rest.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from taskflow_jobs import net
from taskflow_jobs.db.schema_dump import with_database
from taskflow_jobs.devstack import processes
from tests.support.databases import create_database, drop_database
from tests.support.prefect_stack import socket_dir


@flow(name="retention-probe", persist_result=False)
def probe(label: str) -> str:
    get_run_logger().info("probe %s says hello", label)
    create_markdown_artifact(f"probe {label}", key=f"probe-{label}")
    return label


@pytest.fixture(scope="module")
def vacuuming_server(
    pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    name = f"prefect_retention_{os.getpid()}"
    create_database(pg_admin_url, name)
    home = tmp_path_factory.mktemp("prefect-retention")
    asyncpg_url = f"postgresql+asyncpg://postgres@/{name}?host={socket_dir(pg_admin_url)}"
    env = processes.prefect_server_env(
        home, asyncpg_url, net.free_port(), run_retention_days=1.5 / 24, event_retention_days=1
    )
    env["PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS"] = "2"
    supervisor = processes.Supervisor(home / "logs")
    try:
        processes.start_prefect_server(supervisor, env, timeout=240)
        yield env["PREFECT_API_URL"], with_database(pg_admin_url, name)
    finally:
        supervisor.stop()
        drop_database(pg_admin_url, name)


def test_up_turns_on_flow_run_vacuum_with_our_retention() -> None:
    env = processes.prefect_server_env(
        Path("/tmp/x"), None, 4200, run_retention_days=2, event_retention_days=3
    )
    assert env["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"] == "events,flow_runs"
    assert env["PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD"] == str(2 * 86400)
    assert env["PREFECT_SERVER_EVENTS_RETENTION_PERIOD"] == f"PT{3 * 86400}S"


def _counts(prefect_db: str, run_ids: list[uuid.UUID]) -> dict[str, int]:
    ids = [str(i) for i in run_ids]
    with psycopg.connect(prefect_db) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE flow_run_id = ANY(%s::uuid[])", (ids,)
            ).fetchone()[0]
            for table in ("log", "artifact")
        } | {
            "flow_run": conn.execute(
                "SELECT count(*) FROM flow_run WHERE id = ANY(%s::uuid[])", (ids,)
            ).fetchone()[0]
        }


def test_old_runs_their_logs_and_artifacts_go_away(vacuuming_server: tuple[str, str]) -> None:
    api_url, prefect_db = vacuuming_server
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        old = [probe(f"old{i}", return_state=True) for i in range(2)]
        recent = probe("recent", return_state=True)
    old_ids = [s.state_details.flow_run_id for s in old]
    recent_id = recent.state_details.flow_run_id
    deadline = time.monotonic() + 30
    while _counts(prefect_db, [*old_ids, recent_id])["log"] < 3 and time.monotonic() < deadline:
        time.sleep(0.5)  # logs are shipped in batches
    before = _counts(prefect_db, old_ids)
    assert before["flow_run"] == 2 and before["log"] >= 2 and before["artifact"] == 2

    # three hours ago, past the 90-minute retention
    with psycopg.connect(prefect_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE flow_run SET end_time = now() - interval '3 hours' WHERE id = ANY(%s::uuid[])",
            ([str(i) for i in old_ids],),
        )
    deadline = time.monotonic() + 120
    after = before
    while time.monotonic() < deadline:
        after = _counts(prefect_db, old_ids)
        if after == {"flow_run": 0, "log": 0, "artifact": 0}:
            break
        time.sleep(1)
    assert after == {"flow_run": 0, "log": 0, "artifact": 0}
    kept = _counts(prefect_db, [recent_id])
    assert kept["flow_run"] == 1 and kept["artifact"] == 1

    async def read() -> object:
        async with get_client() as client:
            return await client.read_flow_run(recent_id)

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        assert asyncio.run(read()).name  # the recent run is still readable through the API
