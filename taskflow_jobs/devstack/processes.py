"""Running the local system: child processes, ports, and the Prefect server on embedded Postgres.

Used by `taskflow-jobs up` / `demo` and by the end-to-end tests, so that what the tests
start is what a newcomer starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from taskflow_jobs.net import check_port_free, wait_for_http

PREFECT_PORT = 4200


def prefect_server_env(
    prefect_home: Path,
    database_url: str | None,
    port: int,
    host: str = "127.0.0.1",
    *,
    run_retention_days: float = 30.0,
    event_retention_days: float = 7.0,
) -> dict[str, str]:
    """Environment for a Prefect server (and its clients) kept under our data directory.

    Prefect's database vacuum is on for flow runs as well as events, so runs, their logs
    and artifacts older than `run_retention_days` go away (Prefect's default vacuums
    events only and keeps every run forever).
    """
    env = {
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(int(run_retention_days * 86400)),
        "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": f"PT{int(event_retention_days * 86400)}S",
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": f"http://{host}:{port}/api",
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    }
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    return env


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path | None = None


@dataclass
class Supervisor:
    """Starts child processes in their own process groups and stops them all on exit."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str], *, to_log: bool = True
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log" if to_log else None
        out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        if out:
            out.close()
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def exited(self) -> list[Child]:
        return [c for c in self.children if c.process.poll() is not None]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every child (newest first), then SIGKILL what is left after `timeout`."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.process.wait(remaining)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        self.children.clear()

    def kill(self) -> None:
        """SIGKILL every child now (a second Ctrl-C while stopping)."""
        for child in self.children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)


def start_prefect_server(
    supervisor: Supervisor, env: Mapping[str, str], *, timeout: float = 90.0
) -> Child:
    host, port = env["PREFECT_SERVER_API_HOST"], int(env["PREFECT_SERVER_API_PORT"])
    check_port_free(host, port, "the Prefect server", "TASKFLOW_PREFECT_PORT")
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    child = supervisor.start("prefect-server", argv, env)
    wait_for_http(f"http://{host}:{port}/api/health", timeout, child.process, child.log_path)
    return child
