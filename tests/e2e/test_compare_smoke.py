"""The comparison's three designs each deliver 10 emails end to end (`make compare` runs
them at full size): real PostgreSQL 15 with pgmq and pg_cron, real Workers in Miniflare,
real `taskflow-jobs consume`, all posting to the same SendGrid stand-in. The first run
installs Debian's PostgreSQL 15 + pg_cron and the npm packages if they are missing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg
import pytest

from compare import figures
from compare.run import designs, run_design, start_provider
from compare.supabase.cluster import pg15_cluster
from compare.supabase.design import QUERIES
from compare.workload import API_KEY, SMOKE, Provider, address
from taskflow_jobs import net
from taskflow_jobs.devstack import processes

MODULE = [sys.executable, "-m"]
UNKNOWN_HANDLING = {
    "taskflow-jobs": "dead letter with reason",
    "supabase-poll": "logged, then deleted",
    "cloudflare": "logged, then deleted",
}


@pytest.mark.timeout(420)
@pytest.mark.parametrize("name", sorted(UNKNOWN_HANDLING))
def test_each_design_delivers_ten_emails(name: str, tmp_path: Path) -> None:
    run = run_design(name, designs()[name], SMOKE, tmp_path)
    result = figures.compute(run)

    delivered = {to for _, to, status in run.requests if status < 300}
    assert delivered == {address(i) for i in range(SMOKE.signups)}
    assert result["delivered"] == 10
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["dead_lettered"] == 0
    assert result["unknown_type"] == UNKNOWN_HANDLING[name]
    assert result["latency_p50_ms"] is not None and result["latency_p50_ms"] > 0


@pytest.mark.timeout(300)
def test_the_pg_cron_job_invokes_the_edge_function(tmp_path: Path) -> None:
    """The SQL the `process-email-queue` pg_cron job runs reaches the function through the
    pg_net stand-in, and one invocation sends one read's worth (qty 10) of emails."""
    supervisor = processes.Supervisor(tmp_path / "logs")
    try:
        provider = Provider(start_provider(supervisor))
        port = net.free_port()
        url = f"http://127.0.0.1:{port}/functions/v1/process-email-queue"
        with pg15_cluster(net.free_port(), url) as cluster:
            env = {
                "DATABASE_URL": cluster.url(),
                "SENDGRID_API_URL": provider.url,
                "SENDGRID_API_KEY": API_KEY,
            }
            function = supervisor.start("edge-function", [*MODULE, "compare.supabase.edge_function",
                                        "--port", str(port)], env)  # fmt: skip
            net.wait_for_http(f"http://127.0.0.1:{port}/healthz", 60, function.process)
            supervisor.start("relay", [*MODULE, "compare.supabase.invoker", "--mode", "cron",
                             "--function-url", url], env)  # fmt: skip
            with psycopg.connect(cluster.url(), autocommit=True) as conn:
                for i in range(12):
                    conn.execute(QUERIES["signup"], {"email": address(i), "name": f"User {i}"})
                command, schedule = conn.execute(
                    "SELECT command, schedule FROM cron.job WHERE jobname = 'process-email-queue'"
                ).fetchone()
                assert schedule == "* * * * *"
                conn.execute(command)  # what pg_cron runs each minute
                deadline = time.monotonic() + 60
                while len(provider.accepted()) < 10 and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(1)  # an 11th would show up now if one read took more than 10
                left = conn.execute(QUERIES["supabase_backlog"]).fetchone()[0]
            assert len(provider.accepted()) == 10, "one invocation reads qty 10"
            assert left == 2
    finally:
        supervisor.stop()
