"""What a newcomer does after reading the README, with `taskflow-jobs up` (= `make run`):
start the system, sign up and get the email, look at the deployments in the UI, break the
email provider, see the retries, the dead letter (and its run's artifact in the UI) and
the Slack alert, redrive it, stop everything; start again on the same data.

The email provider is SendGrid pointed at a local stand-in we can break on purpose, and
SLACK_WEBHOOK_URL points at a local Slack stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from psycopg.types.json import Jsonb

from taskflow_jobs import db
from taskflow_jobs.db.schema_dump import pg_dump_binary
from taskflow_jobs.devstack.sendgrid_stub import Reply, SendGridStub, StubServer
from taskflow_jobs.net import free_port
from tests.e2e.browser import SCREENSHOTS, chromium_page
from tests.e2e.runs_page import check_run_history
from tests.support.dispatch_helpers import API_KEY
from tests.support.slack_stub import SlackStub, start_slack_stub
from tests.support.waiting import wait_for

CLI = str(Path(sys.executable).parent / "taskflow-jobs")
READY = "Press Ctrl-C to stop everything."


@dataclass
class Up:
    process: subprocess.Popen
    output: Path
    env: dict[str, str]

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def line(self, label: str) -> str:
        match = re.search(rf"^  {label}\s{{2,}}(\S+)", self.text(), re.MULTILINE)
        assert match, f"no {label!r} line in:\n{self.text()}"
        return match.group(1)

    @property
    def cli_env(self) -> dict[str, str]:
        return {**self.env, "DATABASE_URL": self.line("database")}

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [CLI, *args], env=self.cli_env, capture_output=True, text=True, timeout=120
        )

    def status(self) -> dict:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def stop(self, timeout: float = 90) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def kill_everything(self) -> None:
        """After a failed test: the children run in sessions of their own, so stop them too.

        Called from `finally`: when a test is failing, the tails of the component logs go
        to the captured output so a red CI run says what the system was doing."""
        if sys.exc_info()[0] is not None:
            self.print_logs()
        if self.process.poll() is not None:
            return
        children = psutil.Process(self.process.pid).children(recursive=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop(60)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        if self.process.poll() is None:
            self.process.kill()

    @property
    def logs(self) -> list[Path]:
        """The component logs (server, worker, consumer, receiver) under the data dir."""
        return sorted((Path(self.env["TASKFLOW_DATA_DIR"]) / "logs").glob("*.log"))

    def print_logs(self, lines: int = 40) -> None:
        print(f"--- taskflow-jobs up\n{self.text()[-4000:]}")
        for log in self.logs:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {log}\n" + "\n".join(tail))


def start_up(env: dict[str, str], log: Path) -> Up:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [CLI, "up"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Up(process, log, env)


def wait_ready(up: Up, timeout: float = 240) -> None:
    def ready() -> bool:
        if up.process.poll() is not None:
            raise AssertionError(f"`taskflow-jobs up` exited early:\n{up.text()}")
        return READY in up.text()

    wait_for(ready, timeout, "`taskflow-jobs up` to be ready")


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[StubServer]:
    server = StubServer(SendGridStub(API_KEY)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStub]:
    stub = start_slack_stub()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def up_env(
    tmp_path_factory: pytest.TempPathFactory, sendgrid: StubServer, slack: SlackStub
) -> dict[str, str]:
    data = tmp_path_factory.mktemp("up") / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "DATABASE_URL", "TASKFLOW_", "WEBHOOK_", "EMAIL_"))
    }
    prefect_port = free_port()
    env.update(
        TASKFLOW_DATA_DIR=str(data),
        TASKFLOW_PREFECT_PORT=str(prefect_port),
        PREFECT_API_URL=f"http://127.0.0.1:{prefect_port}/api",  # for our CLI calls
        WEBHOOK_PORT=str(free_port()),
        EMAIL_PROVIDER="sendgrid",
        SENDGRID_API_URL=sendgrid.url,
        SENDGRID_API_KEY=API_KEY,
        SENDGRID_TIMEOUT="5",
        EMAIL_MAX_ATTEMPTS="3",
        EMAIL_BACKOFF_BASE="1",
        EMAIL_BACKOFF_CAP="2",
        EMAIL_IDLE_TIMEOUT="3",
        SLACK_WEBHOOK_URL=slack.url,
        ALERT_DEAD_LETTER_THRESHOLD="1",
    )
    return env


def delivered_to(sendgrid: StubServer, address: str) -> bool:
    return any(r.to == address and r.status == 202 for r in sendgrid.stub.received)


def signup(up: Up, email: str) -> str:
    with db.connect(up.line("database"), autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO auth.users (email, raw_user_meta_data) VALUES (%s, %s) RETURNING id",
            (email, Jsonb({"full_name": "New User"})),
        ).fetchone()
    return str(row["id"])


def email_artifact_id(api_url: str, flow_run_id: str) -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def find() -> str | None:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        return str(found[0].id) if found else None

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return asyncio.run(find())


def dead_lettered_run_id(api_url: str) -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStateName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def find() -> str | None:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state={"name": FlowRunFilterStateName(any_=["DeadLettered"])}
                )
            )
        return str(runs[0].id) if runs else None

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return asyncio.run(find())


def test_the_newcomer_journey(
    up_env: dict[str, str], sendgrid: StubServer, slack: SlackStub, tmp_path: Path
) -> None:
    up = start_up(up_env, tmp_path / "up.log")
    try:
        wait_ready(up)
        ready_at = time.monotonic()
        ui = up.line("Prefect UI")
        assert up.line("webhooks").startswith("http://127.0.0.1:")
        assert "demo data: 3 users" in up.text()

        # the demo data's emails (3 welcomes, 1 assignment) go out through the provider
        wait_for(lambda: len(sendgrid.stub.accepted()) >= 4, 60, "the demo emails")

        # 1. a signup gets its welcome email
        signup(up, "first@example.com")
        wait_for(lambda: delivered_to(sendgrid, "first@example.com"), 30, "the welcome email")

        # 2. the UI lists the five deployments with their schedules (the sweep has none)
        with chromium_page() as page:
            page.goto(f"{ui}/deployments")
            page.get_by_text("5 Deployments").wait_for()
            body = page.inner_text("body")
            for name in ("email-dispatch", "daily-stats", "health-check", "cleanup",
                         "weekly-summary"):  # fmt: skip
                assert name in body
            for schedule in ("At 01:00 AM every day", "Every hour"):
                assert schedule in body
            assert "Every minute" not in body, "no sweep schedule: runs only for overdue email"
            page.screenshot(path=str(SCREENSHOTS / "deployments.png"))

        # 3. break the provider: 500s are retried (and recorded) until attempts run out
        sendgrid.stub.script = lambda body: Reply(500)
        broken = "broken@example.com"
        signup(up, broken)

        def dead() -> list[dict]:
            return up.status()["dead_letters"]

        [letter] = wait_for(dead, 60, "the dead letter")
        assert letter["type"] == "welcome_email"
        assert letter["reason"] == "attempts exhausted (3/3); last error: SendGrid 500"
        assert [e["attempt"] for e in letter["errors"]] == [1, 2, 3], "every try is history"
        assert all("500" in e["error"] for e in letter["errors"])
        assert sum(r.to == broken for r in sendgrid.stub.received) == 3, "three real tries"
        # the retries (backoff here is 0-2 s, too quick to catch while pending) are listed
        # by `status` as failures of the message that is now dead
        failures = [f for f in up.status()["recent_failures"] if f["message_id"] == letter["id"]]
        assert sorted(f["attempt"] for f in failures) == [1, 2, 3]
        assert {f["outcome"] for f in failures} == {"dead"}

        # 4. the Slack alert for the dead letter
        alert = wait_for(
            lambda: [r.text for r in slack.requests if "dead-lettered" in r.text], 90, "alert"
        )
        assert "welcome_email" in alert[-1]

        # 5. the run that dead-lettered it is red in the UI; its artifact shows the reason
        run_id = wait_for(lambda: dead_lettered_run_id(up.env["PREFECT_API_URL"]), 60, "run")
        artifact_id = email_artifact_id(up.env["PREFECT_API_URL"], run_id)
        assert artifact_id, "the run published its table artifact"
        with chromium_page() as page:
            page.goto(f"{ui}/runs/flow-run/{run_id}")
            page.get_by_text("DeadLettered").first.wait_for()
            page.goto(f"{ui}/artifacts/artifact/{artifact_id}")
            page.get_by_text("attempts exhausted").first.wait_for()
            body = page.inner_text("body")
            assert "dead-lettered" in body and str(letter["id"]) in body
            page.screenshot(path=str(SCREENSHOTS / "dead-letter-artifact.png"), full_page=True)

        # 6. fix the provider, redrive, and the email goes out
        sendgrid.stub.script = lambda body: Reply(202)
        redrive = up.cli("dlq", "redrive", "--all")
        assert redrive.returncode == 0, redrive.stderr
        wait_for(lambda: delivered_to(sendgrid, broken), 60, "the redriven email")
        assert up.status()["dead_letters"] == []

        # 7. after idle time the Runs page lists only runs that did work; a dead letter stands out
        check_run_history(up.env["PREFECT_API_URL"], ui, ready_at, SCREENSHOTS / "runs.png")

        # 8. Ctrl-C stops every child process
        children = psutil.Process(up.process.pid).children(recursive=True)
        assert len(children) >= 4, "server, worker, consumer and receiver"
        assert up.stop() == 0
        assert "stopped." in up.text()
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, [p.cmdline() for p in alive]

        # 9. no component logged a secret (nor Apprise's noise about the Slack URL)
        assert up.logs, "the components' logs exist"
        slack_token = slack.url.rsplit("/", 1)[1]
        for log in up.logs:
            text = log.read_text(errors="replace")
            for secret in (slack_token, API_KEY):
                assert secret not in text, f"{secret!r} in {log.name}"
            assert "Unparseable URL" not in text, log.name
    finally:
        up.kill_everything()


def test_a_second_run_reuses_the_data_and_busy_ports_are_named(
    up_env: dict[str, str], sendgrid: StubServer, tmp_path: Path
) -> None:
    sendgrid.stub.script = lambda body: Reply(202)  # whatever the journey left behind
    up = start_up(up_env, tmp_path / "again.log")
    try:
        wait_ready(up)
        assert "demo data:" not in up.text(), "the first run's data is still there"
        # one name everywhere: the banner's run is the one `runs` (the UI's data) shows
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        name = f"daily-stats-{yesterday}"
        assert f"daily-stats report requested: run {name!r}" in up.text()

        def listed() -> bool:
            done = up.cli("runs", "--flow", "daily-stats", "--json")
            return done.returncode == 0 and name in [r["name"] for r in json.loads(done.stdout)]

        wait_for(listed, 120, f"run {name} in `taskflow-jobs runs`")
        assert up.status()["queues"][0]["queue"] == "email_notifications"

        second = subprocess.run([CLI, "up"], env=up_env, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert second.returncode == 1
        assert "port is in use" in second.stderr and "TASKFLOW_PREFECT_PORT" in second.stderr
        assert "Traceback" not in second.stderr
        assert up.process.poll() is None, "the running system is untouched"

        email = f"again-{uuid.uuid4().hex[:6]}@example.com"
        signup(up, email)
        wait_for(lambda: delivered_to(sendgrid, email), 30, "an email after the restart")
        assert up.stop() == 0
    finally:
        up.kill_everything()


def _postmasters(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
                found.append(proc)
    return found


def test_up_stops_on_sigint_even_when_started_with_it_ignored_and_pg_restarted(
    up_env: dict[str, str], tmp_path: Path
) -> None:
    """A script or service manager may start `up` with SIGINT ignored; PostgreSQL may have
    been restarted from outside (a new postmaster PID). SIGINT still stops everything,
    the cluster included; what `up` started is gone afterwards."""
    log = tmp_path / "ignored.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [CLI, "up"], env=up_env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )  # fmt: skip
    up = Up(process, log, up_env)
    pgdata = Path(up_env["TASKFLOW_DATA_DIR"]).resolve() / "pg"
    try:
        wait_ready(up)
        children = psutil.Process(process.pid).children(recursive=True)
        [before] = [p.pid for p in _postmasters(pgdata)][:1]
        # the new postmaster keeps pg_ctl's output open: send it to a file, not a pipe
        pg_ctl = str(pg_dump_binary().with_name("pg_ctl"))
        with open(tmp_path / "restart.out", "wb") as out:
            restarted = subprocess.run(
                [pg_ctl, "-D", str(pgdata), "-l", str(pgdata / "restart.log"), "-w", "-m",
                 "fast", "restart"],
                user="embedded_postgres" if os.geteuid() == 0 else None,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=60,
            )  # fmt: skip
        assert restarted.returncode == 0, (tmp_path / "restart.out").read_text()
        assert before not in [p.pid for p in _postmasters(pgdata)], "a new postmaster"
        started = time.monotonic()
        assert up.stop(timeout=60) == 0, up.text()
        print(f"up stopped {time.monotonic() - started:.1f}s after SIGINT")
        assert "stopped." in up.text()
        assert _postmasters(pgdata) == [], "the restarted cluster is stopped too"
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        up.kill_everything()
