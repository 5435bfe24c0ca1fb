"""`taskflow-jobs consume` as real processes: SIGKILL mid-batch loses nothing, two consumers
never send a message twice, SIGTERM finishes what is in flight, releases the rest, exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from taskflow_jobs import db
from taskflow_jobs.devstack.sendgrid_stub import Reply, StubServer
from tests.support.dispatch_helpers import signup


class Consumers:
    """Starts `taskflow-jobs consume` subprocesses; kills any left at the end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, **overrides: str) -> subprocess.Popen:
        log = open(self.log_dir / f"consumer-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "taskflow-jobs"), "consume"],
            env={**os.environ, **self.env, **overrides},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, index: int) -> str:
        return (self.log_dir / f"consumer-{index}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def consumers(email_env: dict[str, str], tmp_path: Path) -> Iterator[Consumers]:
    pool = Consumers(email_env, tmp_path)
    yield pool
    pool.stop_all()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def counts(conn: psycopg.Connection) -> dict[str, int]:
    return conn.execute(
        "SELECT (SELECT count(*) FROM jobs.messages) AS live,"
        " (SELECT count(*) FROM jobs.messages WHERE claim_token IS NOT NULL) AS leased,"
        " (SELECT count(*) FROM jobs.archive) AS archived,"
        " (SELECT count(*) FROM jobs.dead_letters) AS dead"
    ).fetchone()


# a lease of 3 s: the sends (SENDGRID_TIMEOUT) and the last settle must fit in it
SHORT_LEASE = {
    "EMAIL_VISIBILITY_TIMEOUT": "3",
    "SENDGRID_TIMEOUT": "1",
    "EMAIL_SETTLE_MARGIN": "0.5",
}


def test_sigkill_mid_batch_loses_nothing(
    conn: psycopg.Connection, consumers: Consumers, sendgrid: StubServer
) -> None:
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(30)]
    sendgrid.stub.script = lambda body: Reply(202, delay=0.2)  # slow: the kill lands mid-batch
    first = consumers.start(**SHORT_LEASE)
    wait_until(lambda: len(sendgrid.stub.received) >= 3, 60, "the first sends")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert counts(conn)["leased"] > 0, "the kill should leave leased messages behind"

    sendgrid.stub.script = lambda body: Reply(202)
    consumers.start(**SHORT_LEASE)
    wait_until(lambda: counts(conn)["archived"] == len(ids), 90, "every message delivered")

    delivered = {r.message_id for r in sendgrid.stub.accepted()}
    assert delivered == set(ids)
    assert counts(conn)["dead"] == 0
    expired = conn.execute(
        "SELECT count(*) AS n FROM jobs.archive"
        ' WHERE errors @> \'[{"error": "visibility timeout expired before ack"}]\''
    ).fetchone()["n"]
    assert expired > 0, "the killed consumer's leases expired and were taken over"


def sent_by(log: str) -> int:
    """Emails one consume process reports as sent (its "burst done" lines)."""
    return sum(
        int(line.split("'sent': ")[1].split(",")[0])
        for line in log.splitlines()
        if "burst done:" in line
    )


def test_two_consumers_never_send_the_same_message_twice(
    conn: psycopg.Connection, database_url: str, consumers: Consumers, sendgrid: StubServer
) -> None:
    sendgrid.stub.script = lambda body: Reply(202, delay=0.005)
    a = consumers.start(EMAIL_IDLE_TIMEOUT="1")
    b = consumers.start(EMAIL_IDLE_TIMEOUT="1")
    wait_until(
        lambda: "consuming" in consumers.log(0) and "consuming" in consumers.log(1),
        60,
        "both consumers listening",
    )
    writers, each = 4, 50
    total = writers * each
    start = threading.Barrier(writers)

    def signups(offset: int) -> None:
        with db.connect(database_url, autocommit=True) as writer:
            start.wait()  # the writers sign up at the same time
            for i in range(offset, total, writers):
                signup(writer, f"user{i}@example.com", f"User {i}")

    threads = [threading.Thread(target=signups, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: counts(conn)["archived"] == total, 90, "every message delivered")

    sent = Counter(r.message_id for r in sendgrid.stub.received)
    assert len(sent) == total
    assert max(sent.values()) == 1, f"sent twice: {[m for m, n in sent.items() if n > 1]}"
    assert a.poll() is None and b.poll() is None, "both consumers keep running"
    wait_until(
        lambda: sent_by(consumers.log(0)) + sent_by(consumers.log(1)) == total,
        30,
        "both bursts to end",
    )
    shares = sent_by(consumers.log(0)), sent_by(consumers.log(1))
    assert min(shares) > 0, f"one consumer sent everything: {shares}"


def test_sigterm_finishes_in_flight_releases_the_rest_and_exits_0(
    conn: psycopg.Connection, consumers: Consumers, sendgrid: StubServer
) -> None:
    ids = [signup(conn, f"user{i}@example.com", f"User {i}")[1] for i in range(10)]
    sendgrid.stub.script = lambda body: Reply(202, delay=0.5)
    process = consumers.start(SENDGRID_CONCURRENCY="1", EMAIL_CONCURRENCY="1")
    wait_until(lambda: len(sendgrid.stub.received) >= 1, 60, "the first send")

    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(30) == 0, consumers.log(0)

    state = counts(conn)
    sent = len(sendgrid.stub.received)
    assert sent < len(ids), "it stopped instead of draining everything"
    assert state["archived"] == sent, "what was sent is acked"
    assert state["leased"] == 0, "nothing stays leased"
    attempts = conn.execute("SELECT attempt FROM jobs.messages").fetchall()
    assert len(attempts) == len(ids) - sent
    assert all(row["attempt"] == 0 for row in attempts), "released without using an attempt"
    assert "consumer stopped" in consumers.log(0)


def consume_runs(pid: int) -> list:
    """The `email-dispatch` flow runs one consume process reported, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f":{pid} ")),
            sort=FlowRunSort.START_TIME_ASC,
        )
        return runs


def run_artifact(run_id) -> list[dict]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return [json.loads(a.data) if isinstance(a.data, str) else a.data for a in found]


def totals(table: list[dict]) -> dict[str, int]:
    return {row["outcome"]: row["count"] for row in table if row["message"] == "total"}


def test_each_burst_is_a_flow_run_that_ends_when_idle(
    conn: psycopg.Connection, consumers: Consumers, sendgrid: StubServer
) -> None:
    process = consumers.start(EMAIL_IDLE_TIMEOUT="1")
    signup(conn, "first@example.com", "First")
    wait_until(lambda: len(sendgrid.stub.accepted()) == 1, 60, "the first burst")

    def finished() -> list:
        return [r for r in consume_runs(process.pid) if r.state and r.state.is_final()]

    wait_until(lambda: len(finished()) == 1, 30, "the idle burst's run to end")
    signup(conn, "second@example.com", "Second")
    wait_until(lambda: len(sendgrid.stub.accepted()) == 2, 60, "the second burst")
    wait_until(lambda: len(finished()) == 2, 30, "the second burst's run to end")

    runs = finished()
    assert [r.state.type.value for r in runs] == ["COMPLETED", "COMPLETED"]
    assert all(r.name.startswith("consume@") for r in runs)
    for run in runs:
        (table,) = run_artifact(run.id)
        assert totals(table)["sent"] == 1
