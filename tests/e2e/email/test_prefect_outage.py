"""Prefect observes delivery, it does not gate it: `consume` keeps sending while a real
Prefect server is frozen (SIGSTOP) or absent, and the outage shows in Prefect once it is
back: a run of its own with the counts, and the dead-letter events it could not emit."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from taskflow_jobs import db, net
from taskflow_jobs.devstack import processes as system
from taskflow_jobs.devstack.sendgrid_stub import Reply, StubServer
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.e2e.email.test_consume import Consumers, counts, run_artifact, totals, wait_until
from tests.support.databases import create_database, drop_database
from tests.support.dispatch_helpers import signup
from tests.support.prefect_stack import socket_dir

WARNING = "delivering without Prefect"
RECOVERED = "Prefect API answers again"


@dataclass
class OwnPrefect:
    """A Prefect server only this module uses, so freezing it disturbs no other test."""

    api_url: str
    child: system.Child

    def signal(self, sig: signal.Signals) -> None:
        os.killpg(self.child.process.pid, sig)

    @contextlib.contextmanager
    def client(self) -> Iterator[object]:
        from prefect.client.orchestration import SyncPrefectClient

        with SyncPrefectClient(self.api_url) as client:
            yield client


@pytest.fixture(scope="module")
def own_prefect(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    root = tmp_path_factory.mktemp("own-prefect")
    create_database(pg_admin_url, "prefect_outage")
    url = f"postgresql+asyncpg://postgres@/prefect_outage?host={socket_dir(pg_admin_url)}"
    env = system.prefect_server_env(root / "home", url, net.free_port())
    supervisor = system.Supervisor(root / "logs")
    try:
        child = system.start_prefect_server(supervisor, env, timeout=120)
        yield OwnPrefect(env["PREFECT_API_URL"], child)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor.children[0].process.pid, signal.SIGCONT)
        supervisor.stop()
        drop_database(pg_admin_url, "prefect_outage")


@pytest.fixture
def pool(email_env: dict[str, str], tmp_path: Path) -> Iterator[Consumers]:
    consumers = Consumers({**email_env, "TASKFLOW_PREFECT_TIMEOUT": "2"}, tmp_path)
    yield consumers
    consumers.stop_all()


def concurrent_signups(url: str, start: int, total: int, writers: int = 4) -> None:
    def write(offset: int) -> None:
        with db.connect(url, autocommit=True) as conn:
            for i in range(start + offset, start + total, writers):
                signup(conn, f"user{i}@example.com", f"User {i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def runs_named(prefect: OwnPrefect, part: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with prefect.client() as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=part))
        )


def dead_letter_events(prefect: OwnPrefect, message_id: int) -> list:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with prefect.client() as client:
        page = client.request(
            "POST",
            "/events/filter",
            json={
                "filter": EventFilter(
                    event=EventNameFilter(name=["taskflow.email.dead-lettered"]),
                    resource=EventResourceFilter(id=[f"taskflow.email.{message_id}"]),
                ).model_dump(mode="json"),
                "limit": 10,
            },
        ).json()
    return page["events"]


def test_frozen_prefect_does_not_stop_delivery_and_the_outage_is_reported_after(
    conn: psycopg.Connection,
    database_url: str,
    pool: Consumers,
    sendgrid: StubServer,
    own_prefect: OwnPrefect,
) -> None:
    sendgrid.stub.script = lambda body: Reply(202)
    process = pool.start(PREFECT_API_URL=own_prefect.api_url, EMAIL_IDLE_TIMEOUT="1")
    signup(conn, "before@example.com", "Before")
    wait_until(lambda: len(sendgrid.stub.accepted()) == 1, 60, "the first email")
    label = f":{process.pid} "

    def burst_runs_done() -> bool:
        return any(r.state and r.state.is_completed() for r in runs_named(own_prefect, label))

    wait_until(burst_runs_done, 30, "the first burst reported as a completed flow run")

    own_prefect.signal(signal.SIGSTOP)
    try:
        frozen_at = time.monotonic()
        concurrent_signups(database_url, 1, 20)
        poison = queue.send(conn, EMAIL_QUEUE, {"type": "sms_blast"})
        wait_until(lambda: len(sendgrid.stub.accepted()) == 21, 30, "all 20 sent while frozen")
        wait_until(lambda: counts(conn)["dead"] == 1, 10, "the poison message dead-lettered")
        sent_within = time.monotonic() - frozen_at
        wait_until(lambda: WARNING in pool.log(0), 20, "the switch to be logged")
        assert pool.log(0).count(WARNING) == 1, pool.log(0)
    finally:
        own_prefect.signal(signal.SIGCONT)
    assert sent_within < 25, "sends did not wait for the frozen server"

    wait_until(lambda: RECOVERED in pool.log(0), 60, "the switch back to be logged")
    log = pool.log(0)
    assert log.count(WARNING) == 1 and log.count(RECOVERED) == 1, log
    assert "20 sent" in log.split(RECOVERED)[1].splitlines()[0]

    (outage,) = runs_named(own_prefect, f"{label.strip()} outage")
    assert outage.state.name == "DeadLettered", "the outage dead-lettered one email"
    (table,) = run_artifact_from(own_prefect, outage.id)
    assert totals(table)["sent"] == 20 and totals(table)["dead-lettered"] == 1
    wait_until(lambda: dead_letter_events(own_prefect, poison), 30, "the held-back event")
    time.sleep(1)  # a second copy would be stored by now too
    assert len(dead_letter_events(own_prefect, poison)) == 1, "emitted once"
    assert conn.execute("SELECT count(*) AS n FROM jobs.prefect_outbox").fetchone()["n"] == 0
    assert counts(conn)["archived"] == 21


def run_artifact_from(prefect: OwnPrefect, run_id) -> list:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect.api_url}):
        return run_artifact(run_id)


@pytest.mark.parametrize("where", ["nothing listens at PREFECT_API_URL", "no PREFECT_API_URL"])
def test_consume_delivers_with_no_prefect_at_all(
    conn: psycopg.Connection, pool: Consumers, sendgrid: StubServer, where: str
) -> None:
    nowhere = net.free_port()
    env = {"TASKFLOW_PREFECT_PORT": str(nowhere)}
    if where == "no PREFECT_API_URL":
        env["PREFECT_API_URL"] = ""
    else:
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{nowhere}/api"
    sendgrid.stub.script = lambda body: Reply(202)
    pool.start(**env)
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(10)]
    wait_until(lambda: counts(conn)["archived"] == len(ids), 30, "every email sent")
    assert {r.message_id for r in sendgrid.stub.accepted()} == set(ids)
    wait_until(lambda: WARNING in pool.log(0), 20, "the switch to be logged")
    time.sleep(6)  # a few probes later: still one warning
    log = pool.log(0)
    assert log.count(WARNING) == 1, log
    assert f"127.0.0.1:{nowhere}/api" in log
    assert "Starting temporary server" not in log, "no ephemeral Prefect server"


@pytest.mark.parametrize(
    ("unset", "block"),
    [("EMAIL_PROVIDER", "taskflow-email"), ("DATABASE_URL", "taskflow-database")],
)
def test_consume_fails_closed_when_a_needed_block_cannot_be_read(
    conn: psycopg.Connection, pool: Consumers, sendgrid: StubServer, unset: str, block: str
) -> None:
    """No default stands in for a setting that a block should give: the console provider
    would archive real mail as sent, an embedded database would be the wrong one."""
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(3)]
    nowhere = net.free_port()
    process = pool.start(
        **{unset: ""},
        PREFECT_API_URL=f"http://127.0.0.1:{nowhere}/api",
        TASKFLOW_BLOCKS_WAIT="2",
    )
    assert process.wait(60) == 1
    log = pool.log(0)
    assert f"cannot read the Prefect block {block!r}" in log and unset in log, log
    assert "Traceback" not in log
    time.sleep(0.5)
    assert sendgrid.stub.received == [] and counts(conn)["live"] == len(ids), "still queued"


def test_status_prints_the_database_at_once_and_gives_up_on_a_frozen_prefect(
    database_url: str, data_dir: Path, own_prefect: OwnPrefect
) -> None:
    import subprocess
    import sys

    argv = [str(Path(sys.executable).parent / "taskflow-jobs"), "status"]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TASKFLOW_DATA_DIR": str(data_dir),
        "PREFECT_API_URL": own_prefect.api_url,
        "COLUMNS": "200",
    }
    own_prefect.signal(signal.SIGSTOP)
    try:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        arrivals: list[tuple[float, str]] = []
        assert process.stdout is not None
        for line in process.stdout:
            arrivals.append((time.monotonic(), line))
        process.wait(60)
    finally:
        own_prefect.signal(signal.SIGCONT)
    text = "".join(line for _, line in arrivals)
    assert process.returncode == 0, text
    queues_at = next(at for at, line in arrivals if "email_notifications" in line)
    ended_at = arrivals[-1][0]
    assert "did not answer within 5s" in text, text
    assert ended_at - queues_at >= 4, "the database part came before the Prefect wait"
    assert ended_at - queues_at < 10, "the Prefect part gave up within its deadline"


def test_the_outage_of_a_consumer_killed_before_prefect_returns_is_reported_by_the_next(
    conn: psycopg.Connection, pool: Consumers, sendgrid: StubServer, own_prefect: OwnPrefect
) -> None:
    """The outage's counts are checkpointed in PostgreSQL: SIGKILL the consumer while
    Prefect is frozen, and the next consumer that reaches Prefect reports them."""
    sendgrid.stub.script = lambda body: Reply(202)
    first = pool.start(PREFECT_API_URL=own_prefect.api_url)
    own_prefect.signal(signal.SIGSTOP)
    try:
        concurrent_signups(conn.info.dsn, 100, 6, writers=2)
        wait_until(lambda: len(sendgrid.stub.accepted()) == 6, 60, "all 6 sent while frozen")
        wait_until(lambda: WARNING in pool.log(0), 30, "the switch to be logged")

        def checkpointed() -> bool:
            row = conn.execute("SELECT summary FROM jobs.prefect_outages").fetchone()
            return row is not None and row["summary"].get("sent") == 6

        wait_until(checkpointed, 10, "the outage's counts checkpointed")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        own_prefect.signal(signal.SIGCONT)
    assert RECOVERED not in pool.log(0), "killed before it could report"

    pool.start(PREFECT_API_URL=own_prefect.api_url)
    label = f":{first.pid} outage"
    # the run is created Running, then set Completed with its artifact
    wait_until(
        lambda: [r for r in runs_named(own_prefect, label) if r.state and r.state.is_final()],
        90,
        "the orphaned outage reported",
    )
    (run,) = runs_named(own_prefect, label)
    assert run.state.is_completed(), run.state
    assert "stopped before it answered again" in (run.state.message or "")
    (table,) = run_artifact_from(own_prefect, run.id)
    assert totals(table)["sent"] == 6
    assert "reported 1 outage(s) of consumers that stopped meanwhile" in pool.log(1)
    wait_until(
        lambda: conn.execute("SELECT count(*) AS n FROM jobs.prefect_outages").fetchone()["n"] == 0,
        10,
        "the row forgotten once reported",
    )
