"""taskflow-jobs in the comparison: embedded PostgreSQL, a Prefect server and `consume`.

Everything runs as `make run` runs it, with its defaults (batch size, concurrency,
visibility timeout, retry policy), posting to the provider stand-in through the SendGrid
provider. The crash SIGKILLs the `consume` process; a supervisor (systemd, Kubernetes)
starts a new one, which the driver does here.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from compare.workload import API_KEY, UNKNOWN_TYPE, Design, keep_logs
from taskflow_jobs import net
from taskflow_jobs.devstack import processes, up
from taskflow_jobs.settings import load_settings
from taskflow_jobs.sql import parse_queries

QUERIES = parse_queries((Path(__file__).parent / "queries.sql").read_text())


def wait_for_listener(conn: psycopg.Connection, child: processes.Child, timeout: float) -> None:
    """Until `consume` LISTENs on the queue's channel (it is ready to be woken)."""
    deadline = time.monotonic() + timeout
    while not conn.execute(QUERIES["taskflow_listening"]).fetchone():
        if child.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"consume did not start; see {child.log_path}")
        time.sleep(0.1)


class TaskflowJobs(Design):
    name = "taskflow-jobs"
    label = "taskflow-jobs (consume)"

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="compare-taskflow-", dir="/tmp"))
        self.supervisor = processes.Supervisor(self.work / "logs")
        self.stack: up.Stack | None = None
        self.conn: psycopg.Connection | None = None
        self.env: dict[str, str] = {}
        self.consumer: processes.Child | None = None

    def start(self, provider_url: str) -> None:
        settings = load_settings(data_dir=self.work / "data", database_url=None)
        self.stack = up.start_stack(
            settings, self.supervisor, prefect_port=net.free_port(), echo=lambda _: None
        )
        self.env = {
            **self.stack.child_env(),
            "EMAIL_PROVIDER": "sendgrid",
            "SENDGRID_API_URL": provider_url,
            "SENDGRID_API_KEY": API_KEY,
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        self.conn = psycopg.connect(self.stack.database_url, autocommit=True, row_factory=dict_row)
        self._start_consumer()

    def _start_consumer(self) -> None:
        assert self.conn is not None
        self.consumer = self.supervisor.start(
            "consumer", up.taskflow_jobs_argv("consume"), self.env
        )
        wait_for_listener(self.conn, self.consumer, 90)

    def signup(self, email: str, name: str) -> None:
        assert self.conn is not None
        self.conn.execute(QUERIES["signup"], {"email": email, "name": name})

    def burst(self, emails: list[str]) -> None:
        assert self.conn is not None
        self.conn.execute(QUERIES["burst"], {"emails": emails})

    def enqueue_unknown(self) -> None:
        assert self.conn is not None
        self.conn.execute(QUERIES["taskflow_unknown"], {"type": UNKNOWN_TYPE})

    def crash_target(self) -> int | None:
        assert self.consumer is not None
        return self.consumer.process.pid

    def after_crash(self) -> None:
        assert self.consumer is not None
        self.consumer.process.wait(30)
        self._start_consumer()

    def backlog(self) -> int | None:
        assert self.conn is not None
        return self.conn.execute(QUERIES["taskflow_backlog"]).fetchone()["n"]

    def dead_letters(self) -> list[dict[str, Any]]:
        assert self.conn is not None
        return self.conn.execute(QUERIES["taskflow_dead_letters"]).fetchall()

    def operator_view(self) -> dict[str, Any]:
        assert self.conn is not None
        view = dict(self.conn.execute(QUERIES["taskflow_operator"]).fetchone())
        reasons = self.conn.execute(QUERIES["taskflow_reasons"]).fetchall()
        view["dead_letter_reasons"] = {r["reason"][:120]: r["n"] for r in reasons}
        return view

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.supervisor.stop()
        if self.stack is not None and self.stack.embedded is not None:
            self.stack.embedded.server.cleanup()
        keep_logs(self.work / "logs", self.name)
        shutil.rmtree(self.work, ignore_errors=True)
