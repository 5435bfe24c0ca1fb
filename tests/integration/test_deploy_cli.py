"""`taskflow-jobs deploy` without a reachable Prefect API: one clear line, exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from taskflow_jobs.net import free_port

CLI = str(Path(sys.executable).parent / "taskflow-jobs")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, "deploy", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreachable_api_is_named_with_what_to_do(tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    done = run({"PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: the Prefect API at {url} is unreachable (ConnectError): start it with "
        "`taskflow-jobs up` or set PREFECT_API_URL to a running server"
    ]


def test_no_api_url_means_the_local_up_server(tmp_path) -> None:
    """Without PREFECT_API_URL the CLI talks to the server `taskflow-jobs up` runs."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    port = free_port()
    done = subprocess.run(
        [CLI, "deploy"],
        env={**env, "PREFECT_HOME": str(tmp_path), "TASKFLOW_PREFECT_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"the Prefect API at http://127.0.0.1:{port}/api is unreachable" in done.stderr
    assert "taskflow-jobs up" in done.stderr
    assert "Traceback" not in done.stderr
