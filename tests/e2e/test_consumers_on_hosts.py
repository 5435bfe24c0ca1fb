"""Three `consume` processes on three hosts (network namespaces of this test's own, joined
by veth pairs to a bridge) and one PostgreSQL. One host's link is cut in the middle of a
batch: its leases expire, the other hosts deliver its messages, nothing is lost, and the
only duplicates are messages that host had handed to the provider but not acknowledged.
The link comes back: the same process delivers again, without a restart.

The server runs with idle_in_transaction_session_timeout and TCP keepalives, as a
database shared by hosts that can vanish should (README "Scale out"): without them a
transaction cut off mid-settle would keep its row locks until the kernel gave up on the
connection, and SKIP LOCKED would pass over those messages for that long."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from taskflow_jobs import db
from taskflow_jobs.devstack import processes
from taskflow_jobs.devstack.sendgrid_stub import Received, Reply, SendGridStub, StubServer
from taskflow_jobs.net import free_port
from tests.support.databases import create_database
from tests.support.debian import postgres15_cluster
from tests.support.dispatch_helpers import API_KEY, signup
from tests.support.ha import taskflow_jobs
from tests.support.netns import can_make_namespaces, network

CANNOT = can_make_namespaces()
pytestmark = pytest.mark.skipif(CANNOT is not None, reason=f"no network namespaces: {CANNOT}")
HOSTS = 3
CUT = 0  # the host whose link is cut
SERVER_OPTIONS = (
    "idle_in_transaction_session_timeout=5s",
    "tcp_keepalives_idle=3",
    "tcp_keepalives_interval=1",
    "tcp_keepalives_count=3",
)


def wait_for(condition, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def host_of(r: Received) -> int:
    return int(r.body["from"]["email"].removeprefix("host").split("@")[0])


def test_a_host_cut_off_mid_batch_loses_nothing_and_resumes(tmp_path: Path) -> None:
    with network(HOSTS) as net:
        subnet = net.gateway.rsplit(".", 1)[0] + ".0/24"
        pg_port = free_port()
        with postgres15_cluster(
            listen=f"127.0.0.1,{net.gateway}",
            hba=(f"host all all {subnet} trust",),
            options=SERVER_OPTIONS,
            port=pg_port,
        ) as admin:
            run_scenario(net, admin, pg_port, tmp_path)


def run_scenario(net, admin: str, pg_port: int, tmp_path: Path) -> None:  # noqa: ANN001
    local_url = create_database(admin, "taskflow")
    db.migrate(local_url)
    create_database(admin, "prefect")
    supervisor = processes.Supervisor(tmp_path / "logs")
    stub = SendGridStub(API_KEY, script=lambda body: Reply(202, delay=0.25))
    sendgrid = StubServer(stub, host=net.gateway).start()
    try:
        prefect_env = processes.prefect_server_env(
            tmp_path / "prefect-home",
            f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/prefect",
            free_port(net.gateway),
            host=net.gateway,
        )
        processes.start_prefect_server(supervisor, prefect_env, timeout=180)
        consumers = []
        for i in range(HOSTS):
            env = {
                "DATABASE_URL": f"postgresql://postgres@{net.gateway}:{pg_port}/taskflow",
                "PREFECT_API_URL": prefect_env["PREFECT_API_URL"],
                "PREFECT_HOME": str(tmp_path / f"home-{i}"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "TASKFLOW_DATA_DIR": str(tmp_path / f"data-{i}"),
                "EMAIL_PROVIDER": "sendgrid",
                "SENDGRID_API_URL": sendgrid.url,
                "SENDGRID_API_KEY": API_KEY,
                "SENDGRID_TIMEOUT": "3",
                "SENDGRID_CONCURRENCY": "2",
                "EMAIL_FROM": f"Host {i} <host{i}@example.com>",
                "EMAIL_BATCH_SIZE": "10",
                "EMAIL_CONCURRENCY": "1",
                "EMAIL_VISIBILITY_TIMEOUT": "6",
                "EMAIL_SETTLE_MARGIN": "1",  # the lease fits a send (3 s) and its settle
                "EMAIL_POLL_INTERVAL": "0.5",
                "EMAIL_BACKOFF_BASE": "1",
                "EMAIL_BACKOFF_CAP": "2",
            }
            argv = net.argv(i, taskflow_jobs("consume"))
            consumers.append(supervisor.start(f"consume-{i}", argv, env))
        scenario(net, local_url, stub, consumers, supervisor)
    finally:
        supervisor.stop()
        sendgrid.stop()


def accepted_by(stub: SendGridStub, host: int, after: float = 0.0) -> list[Received]:
    return [r for r in stub.accepted() if host_of(r) == host and r.at > after]


def scenario(net, url: str, stub: SendGridStub, consumers, supervisor) -> None:  # noqa: ANN001
    with db.connect(url, autocommit=True) as conn:
        first = [signup(conn, f"a{n}@example.com", f"A {n}")[1] for n in range(120)]
    wait_for(lambda: len(accepted_by(stub, CUT)) >= 3, 90, f"host {CUT} sending")
    net.cut(CUT)
    cut_at = time.time()

    def all_delivered(ids: list[int]) -> bool:
        with db.connect(url) as conn:
            live = conn.execute("SELECT count(*) AS n FROM jobs.messages").fetchone()["n"]
        return live == 0 and set(ids) <= {r.message_id for r in stub.accepted()}

    wait_for(lambda: all_delivered(first), 120, "every message delivered by the other hosts")
    cut_sends = {r.message_id for r in stub.accepted() if host_of(r) == CUT}
    after_cut = [r for r in stub.accepted() if r.at > cut_at + 1]
    assert {host_of(r) for r in after_cut} <= {1, 2}, "the cut host reached the provider"
    counts = Counter(r.message_id for r in stub.accepted())
    duplicates = {m for m, n in counts.items() if n > 1}
    assert duplicates <= cut_sends, "a duplicate that the cut host did not send"
    assert max(counts.values()) <= 2
    with db.connect(url) as conn:
        taken_over = conn.execute(
            "SELECT count(*) AS n FROM jobs.archive"
            ' WHERE errors @> \'[{"error": "visibility timeout expired before ack"}]\''
        ).fetchone()["n"]
        dead = conn.execute("SELECT count(*) AS n FROM jobs.dead_letters").fetchone()["n"]
    assert taken_over > 0, "the cut host's leases expired and were taken over"
    assert dead == 0

    # the link comes back, and the other two hosts go: only the cut host's process, never
    # restarted, can deliver what comes next
    net.restore(CUT)
    restored_at = time.time()
    others = [i for i in range(HOSTS) if i != CUT]
    for i in others:
        net.cut(i)
    with db.connect(url, autocommit=True) as conn:
        more = [signup(conn, f"b{n}@example.com", f"B {n}")[1] for n in range(30)]
    wait_for(lambda: all_delivered(more), 180, f"host {CUT} delivering the later messages")
    resumed = min(r.at for r in accepted_by(stub, CUT, restored_at)) - restored_at
    # the others were cut before these were enqueued: the cut host sent every one of them
    assert set(more) <= {r.message_id for r in accepted_by(stub, CUT, restored_at)}
    for i in others:
        net.restore(i)
    assert consumers[CUT].process.poll() is None, "the cut host's consume kept running"
    assert not supervisor.exited(), [c.name for c in supervisor.exited()]
    print(
        f"\nhosts: {len(first)} + {len(more)} messages, {len(duplicates)} duplicates "
        f"(host {CUT} had sent {len(cut_sends)} before the cut), {taken_over} taken over, "
        f"host {CUT} sending again {resumed:.1f}s after its link came back"
    )
