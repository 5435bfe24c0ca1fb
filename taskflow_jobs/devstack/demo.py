"""Demo data for `make run`, and `taskflow-jobs demo`: the whole path in one pass.

`demo` starts the system on embedded defaults in a scratch directory (console emails,
no Slack, free ports, whatever DATABASE_URL says), then drives it like a user would:
a signup → its welcome email, a task assignment → its email, a signed `/api/notify` →
its email, and a `daily-stats` run through the worker. It prints a summary and exits 0,
or 1 naming the step that failed and the logs to read.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.daily_stats import run_name_for as daily_stats_run_name
from taskflow_jobs import db, net
from taskflow_jobs.devstack import processes, up
from taskflow_jobs.devstack.seed import seed_if_empty
from taskflow_jobs.monitoring.prefect_api import DAILY_STATS
from taskflow_jobs.settings import EmailProvider, Settings
from taskflow_jobs.sql import query
from taskflow_jobs.webhooks.auth import sign


@dataclass
class Step:
    name: str
    detail: str = ""
    seconds: float = 0.0
    ok: bool = False


@dataclass
class Demo:
    stack: up.Stack
    steps: list[Step] = field(default_factory=list)

    def step(self, name: str, action: Callable[[], str]) -> None:
        step = Step(name)
        self.steps.append(step)
        started = time.monotonic()
        try:
            step.detail = action()
            step.ok = True
        finally:
            step.seconds = time.monotonic() - started

    def email_for(
        self,
        sql_name: str,
        params: dict[str, Any],
        timeout: float = 30,
        message_id: int | None = None,
    ) -> Path:
        """Wait for the .eml file of message `message_id`, or of the one `sql_name` finds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if message_id is None:
                with db.connect(self.stack.database_url) as conn:
                    row = conn.execute(query(sql_name), params).fetchone()
                message_id = row["message_id"] if row else None
            if message_id is not None:
                found = sorted(self.stack.outbox.glob(f"*-{message_id}.eml"))
                if found:
                    return found[0]
            time.sleep(0.1)
        raise TimeoutError(f"no email within {timeout:.0f}s (message {message_id})")

    def signup(self) -> str:
        email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
        with db.transaction(self.stack.database_url) as conn:
            user = conn.execute(
                query("demo_signup"),
                {"email": email, "name": "Demo User", "created_at": datetime.now(UTC)},
            ).fetchone()["id"]
        self.user = user
        path = self.email_for("demo_message_for_key", {"key": f"welcome_email:{user}"})
        return f"welcome email to {email}: {path}"

    def assignment(self) -> str:
        with db.transaction(self.stack.database_url) as conn:
            task = conn.execute(
                query("demo_assign"),
                {"title": "Try taskflow-jobs", "assignee": self.user, "creator": self.user},
            ).fetchone()["id"]
        path = self.email_for("demo_task_message", {"task_id": task})
        return f"task {task} assigned: {path}"

    def notify(self) -> str:

        key = f"demo-{uuid.uuid4()}"
        body = json.dumps({
            "type": "notification", "idempotency_key": key,
            "data": {"to": "ops@example.com", "subject": "Hello from the demo",
                     "body": "Sent through POST /api/notify."},
        }).encode()  # fmt: skip
        secret = up.webhook_secret(self.stack)
        headers = {"Content-Type": "application/json", **sign(secret, body)}
        response = httpx.post(f"{self.stack.webhook_url}/api/notify", content=body,
                              headers=headers, timeout=30)  # fmt: skip
        if response.status_code != 202:
            raise RuntimeError(f"/api/notify answered {response.status_code}: {response.text}")
        job = response.json()["job_id"]
        path = self.email_for("", {}, message_id=job)
        return f"signed POST /api/notify → 202 (job {job}) → {path}"

    def daily_stats(self) -> str:

        with temporary_settings(updates={PREFECT_API_URL: self.stack.prefect_api_url}):
            name = daily_stats_run_name(None, self.stack.settings.timezone)
            run = run_deployment(f"{DAILY_STATS}/{DAILY_STATS}", timeout=150, flow_run_name=name)
        if not run.state or not run.state.is_completed():  # type: ignore[union-attr]
            raise RuntimeError(f"daily-stats run {run.name} ended {run.state}")  # type: ignore[union-attr]
        yesterday = (datetime.now(self.stack.settings.timezone) - timedelta(days=1)).date()
        with db.connect(self.stack.database_url) as conn:
            row = conn.execute(query("demo_daily_stats"), {"day": yesterday}).fetchone()
        if row is None:
            raise RuntimeError(f"daily-stats completed but wrote no row for {yesterday}")
        return (
            f"run {run.name!r} completed through the worker; {yesterday}: "  # type: ignore[union-attr]
            f"{row['new_tasks']} new tasks, {row['completed_tasks']} completed, "
            f"{row['new_users']} new users"
        )


def demo_settings(settings: Settings, data_dir: Path) -> Settings:
    return settings.model_copy(
        update={
            "data_dir": data_dir,
            "database_url": None,
            "email_provider": EmailProvider.console,
            "slack_webhook_url": None,
            "webhook_secret": None,
            "webhook_host": "127.0.0.1",
            "webhook_port": net.free_port(),
            "prefect_port": net.free_port(),
        }
    )


def run_demo(settings: Settings, *, keep: bool = False, echo: Callable[[str], None] = print) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="taskflow-demo-"))
    settings = demo_settings(settings, data_dir)
    supervisor = processes.Supervisor(data_dir / "logs")
    demo: Demo | None = None
    started = time.monotonic()
    try:
        with up.stopping_on_signals():
            stack = up.start_system(settings, supervisor, echo=echo)
            demo = Demo(stack)
            demo.step("demo data", lambda: seed_if_empty(stack.database_url) or "already there")
            demo.step("signup → welcome email", demo.signup)
            demo.step("task assignment → email", demo.assignment)
            demo.step("webhook → notification email", demo.notify)
            demo.step("daily-stats through the worker", demo.daily_stats)
    except Exception as exc:  # report which step failed, and where the logs are
        failed = demo.steps[-1].name if demo and demo.steps else "starting the system"
        echo(f"demo FAILED at {failed!r}: {type(exc).__name__}: {exc}")
        echo(f"logs: {supervisor.log_dir}")
        keep = True
        return 1
    finally:
        up.stop_all(supervisor, None if settings.database_url else data_dir / "pg")
        if demo is not None:
            for step in demo.steps:
                mark = "ok " if step.ok else "FAIL"
                echo(f"  [{mark}] {step.name:32s} {step.seconds:5.1f}s  {step.detail}")
        echo(f"total {time.monotonic() - started:.0f}s")
        if keep:
            echo(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    echo("demo passed: signup, assignment and webhook emails delivered; daily stats computed")
    return 0
