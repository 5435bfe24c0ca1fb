"""The session's Prefect server and the deployed system, as the e2e fixtures hand them out."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from taskflow_jobs.devstack import processes
from tests.support.slack_stub import SlackStub

PROJECT_DIR = Path(__file__).resolve().parents[2]


def socket_dir(url: str) -> str:
    return parse_qs(urlsplit(url).query)["host"][0]


@dataclass
class PrefectServer:
    api_url: str
    env: dict[str, str]
    supervisor: processes.Supervisor
    log_dir: Path

    @contextlib.contextmanager
    def client(self) -> Iterator[None]:
        """PREFECT_API_URL of this server for the current process (clients, flows)."""

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield

    def server_log(self) -> str:
        path = self.log_dir / "prefect-server.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""


@dataclass
class Deployed:
    server: PrefectServer
    database_url: str
    slack: SlackStub
    deploy_output: str
    worker_env: dict[str, str]
    worker: processes.Child
    runs: list = field(default_factory=list)

    def run(self, name: str, parameters: dict | None = None, timeout: float = 240):
        """Run deployment `name` ("flow/deployment") through the worker; the final flow run."""

        with self.server.client():
            flow_run = run_deployment(name, parameters=parameters or {}, timeout=timeout)
        self.runs.append(flow_run)
        return flow_run

    def run_logs(self, flow_run_id, expect: str, timeout: float = 30) -> str:
        """The run's log messages, polled until `expect` shows up (logs arrive in batches)."""

        deadline = time.monotonic() + timeout
        messages = ""
        with self.server.client(), get_client(sync_client=True) as client:
            while expect not in messages and time.monotonic() < deadline:
                logs = client.read_logs(
                    LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
                )
                messages = "\n".join(entry.message for entry in logs)
                time.sleep(0.5)
        return messages

    def worker_log(self) -> str:
        path = self.worker.log_path
        return path.read_text(errors="replace")[-8000:] if path and path.exists() else ""
