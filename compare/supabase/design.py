"""The Supabase design in the comparison: PostgreSQL 15 with pgmq and pg_cron, the Edge
Function port, and what invokes it (pg_cron once a minute, or a polling loop).

The crash SIGKILLs the function's process mid-invocation; the platform boots a fresh one
for the next invocation, which the driver does here at once.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from compare.supabase.cluster import pg15_cluster
from compare.workload import API_KEY, UNKNOWN_TYPE, Design, keep_logs
from taskflow_jobs import net
from taskflow_jobs.devstack import processes
from taskflow_jobs.sql import parse_queries

QUERIES = parse_queries((Path(__file__).parents[1] / "queries.sql").read_text())
POLL_INTERVAL = 1.0


class Supabase(Design):
    def __init__(self, mode: str) -> None:
        assert mode in ("poll", "cron")
        self.mode = mode
        self.name = f"supabase-{mode}"
        self.label = (
            f"Supabase (Edge Function, polling loop every {POLL_INTERVAL:g} s when idle)"
            if mode == "poll"
            else "Supabase (Edge Function invoked once a minute by pg_cron)"
        )
        self.time_boxed = mode == "cron"
        self.work = Path(tempfile.mkdtemp(prefix=f"compare-{self.name}-", dir="/tmp"))
        self.supervisor = processes.Supervisor(self.work / "logs")
        self.exits = contextlib.ExitStack()
        self.conn: psycopg.Connection | None = None
        self.function: processes.Child | None = None
        self.env: dict[str, str] = {}
        self.function_port = net.free_port()

    @property
    def function_url(self) -> str:
        return f"http://127.0.0.1:{self.function_port}/functions/v1/process-email-queue"

    def start(self, provider_url: str) -> None:
        cluster = self.exits.enter_context(pg15_cluster(net.free_port(), self.function_url))
        self.env = {
            "DATABASE_URL": cluster.url(),
            "SENDGRID_API_URL": provider_url,
            "SENDGRID_API_KEY": API_KEY,
            "EMAIL_FROM": "noreply@example.com",
        }
        self.conn = psycopg.connect(cluster.url(), autocommit=True, row_factory=dict_row)
        if self.mode == "poll":  # the loop replaces the once-a-minute invocation
            self.conn.execute("SELECT cron.unschedule('process-email-queue')")
        self._start_function()
        argv = [sys.executable, "-m", "compare.supabase.invoker", "--mode", self.mode,
                "--function-url", self.function_url, "--interval", str(POLL_INTERVAL)]  # fmt: skip
        self.supervisor.start("invoker", argv, self.env)

    def _start_function(self) -> None:
        argv = [sys.executable, "-m", "compare.supabase.edge_function",
                "--port", str(self.function_port)]  # fmt: skip
        self.function = self.supervisor.start("edge-function", argv, self.env)
        net.wait_for_http(f"http://127.0.0.1:{self.function_port}/healthz", 60,
                             self.function.process, self.function.log_path)  # fmt: skip

    def signup(self, email: str, name: str) -> None:
        assert self.conn is not None
        self.conn.execute(QUERIES["signup"], {"email": email, "name": name})

    def burst(self, emails: list[str]) -> None:
        assert self.conn is not None
        self.conn.execute(QUERIES["burst"], {"emails": emails})

    def enqueue_unknown(self) -> None:
        assert self.conn is not None
        self.conn.execute(QUERIES["supabase_unknown"], {"type": UNKNOWN_TYPE})

    def crash_target(self) -> int | None:
        assert self.function is not None
        return self.function.process.pid

    def after_crash(self) -> None:
        assert self.function is not None
        self.function.process.wait(30)
        self._start_function()

    def backlog(self) -> int | None:
        assert self.conn is not None
        return self.conn.execute(QUERIES["supabase_backlog"]).fetchone()["n"]

    def dead_letters(self) -> list[dict[str, Any]]:
        assert self.conn is not None
        return self.conn.execute(QUERIES["supabase_dead_letters"]).fetchall()

    def operator_view(self) -> dict[str, Any]:
        assert self.conn is not None and self.function is not None
        view = dict(self.conn.execute(QUERIES["supabase_operator"]).fetchone())
        log = self.function.log_path.read_text(errors="replace") if self.function.log_path else ""
        lines = Counter(
            "unknown type logged" if "Unknown job type" in line else "send error logged"
            for line in log.splitlines()
            if "Unknown job type" in line or "Error processing" in line
        )
        view["function_log_lines"] = dict(lines)
        return view

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.supervisor.stop()
        self.exits.close()
        keep_logs(self.work / "logs", self.name)
        shutil.rmtree(self.work, ignore_errors=True)
