"""Starting components: a child that dies or never answers is one clear error naming its log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from taskflow_jobs.errors import StartupError
from taskflow_jobs.net import free_port, wait_for_http


def test_a_child_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    log = tmp_path / "prefect-server.log"
    with pytest.raises(StartupError, match=rf"exited with 3; see its log {log}"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/health", 30, process, log)


def test_a_silent_url_times_out_clearly() -> None:
    with pytest.raises(StartupError, match=r"did not answer within 1s \(ConnectError\)"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/health", 1)
