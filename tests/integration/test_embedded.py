"""The embedded PostgreSQL: started on demand, stopped when its last user exits, even when
an earlier user was killed without a chance to say so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "taskflow-jobs")


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TASKFLOW_DATA_DIR"] = str(data_dir)
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def running(data_dir: Path) -> bool:
    return (data_dir / "pg" / "postmaster.pid").exists()


def wait_stopped(data_dir: Path, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while running(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not running(data_dir)


def test_a_killed_user_does_not_keep_the_server_running(data_dir: Path) -> None:
    assert cli(data_dir, "migrate").returncode == 0
    assert wait_stopped(data_dir), "the last user exited: the server stops"

    code = (
        "import os, signal; from pathlib import Path; from taskflow_jobs import db; "
        f"db.embedded_server(Path({str(data_dir)!r})); os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert running(data_dir), "its user was killed: nobody stopped the server"

    done = cli(data_dir, "psql", "-tAc", "select count(*) from jobs.queues")
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    assert wait_stopped(data_dir), "the next user forgets the dead one and stops the server"
