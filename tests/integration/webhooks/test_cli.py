"""`taskflow-jobs webhooks` as a user runs it: refuses bad configurations with one clear
line, serves signed requests, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from taskflow_jobs import db, net
from taskflow_jobs.webhooks.auth import sign

SECRET = "cli-test-secret-0123456789"
BIN = Path(sys.executable).parent / "taskflow-jobs"


def env_for(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WEBHOOK_", "PREFECT_", "DATABASE_URL", "TASKFLOW_"))
    }
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), TASKFLOW_DATA_DIR=str(tmp_path / "data"))
    env.update(values)
    return env


def run(tmp_path: Path, *args: str, **values: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN), "webhooks", *args],
        env=env_for(tmp_path, **values),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    refused(run(tmp_path), "WEBHOOK_SECRET is not set", "--insecure-dev")


def test_refuses_a_short_secret(tmp_path: Path) -> None:
    result = run(tmp_path, WEBHOOK_SECRET="short")
    refused(result, "at least 16 characters")
    assert "short" not in result.stderr.replace("at least", "")  # the secret is not echoed


def test_insecure_dev_only_on_loopback(tmp_path: Path) -> None:
    refused(run(tmp_path, "--insecure-dev", "--host", "0.0.0.0"), "loopback", "WEBHOOK_SECRET")


def test_port_in_use_is_named(tmp_path: Path, database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            tmp_path, WEBHOOK_SECRET=SECRET, WEBHOOK_PORT=str(port), DATABASE_URL=database_url
        )
    refused(result, f"127.0.0.1:{port}", "in use", "WEBHOOK_PORT")


def test_unmigrated_database_is_named(tmp_path: Path, empty_database_url: str) -> None:
    result = run(
        tmp_path,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_PORT=str(net.free_port()),
        DATABASE_URL=empty_database_url,
    )
    refused(result, "is not migrated", "taskflow-jobs migrate")


def test_unreachable_database_is_named(tmp_path: Path) -> None:
    url = f"postgresql://nobody:hunter2@127.0.0.1:{net.free_port()}/taskflow"
    result = run(
        tmp_path, WEBHOOK_SECRET=SECRET, WEBHOOK_PORT=str(net.free_port()), DATABASE_URL=url
    )
    refused(result, "cannot connect to postgresql://nobody:***@127.0.0.1")
    assert "hunter2" not in result.stderr


def test_serves_signed_requests_and_stops_on_sigterm(tmp_path: Path, database_url: str) -> None:
    port = net.free_port()
    log = tmp_path / "receiver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN), "webhooks"],
            env=env_for(
                tmp_path,
                WEBHOOK_SECRET=SECRET,
                WEBHOOK_PORT=str(port),
                DATABASE_URL=database_url,
                TASKFLOW_PREFECT_PORT=str(net.free_port()),  # no Prefect server there
            ),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        net.wait_for_http(f"http://127.0.0.1:{port}/healthz", 60, process)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        assert health == {"status": "degraded", "database": "ok", "prefect": "unreachable"}
        body = json.dumps(
            {
                "type": "notification",
                "data": {"to": "ops@example.com", "subject": "hi", "body": "from the CLI test"},
            }
        ).encode()
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/notify",
            content=body,
            headers={"Content-Type": "application/json", **sign(SECRET, body)},
        )
        assert response.status_code == 202, response.text
        assert "server" not in response.headers  # no software banner
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert "could not emit taskflow.email.enqueued" in output, output
    assert SECRET not in output
    with db.connect(database_url, autocommit=True) as conn:
        job = conn.execute(
            "SELECT payload FROM jobs.messages WHERE id = %s", (response.json()["job_id"],)
        ).fetchone()
    assert job["payload"]["to"] == "ops@example.com"
    assert isinstance(conn, psycopg.Connection)
