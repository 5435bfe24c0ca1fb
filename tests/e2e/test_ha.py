"""Prefect in HA mode (two API replicas behind nginx, background services apart, Redis for
messaging, cache, ordering and leases): one replica is SIGKILLed in the middle of traffic.
Emails keep leaving (consume and the worker's sweep talk to nginx), a deployment still
runs through the worker, the dead-letter automation still alerts Slack, and every signup
and every /api/notify job is delivered. `make ha` runs this test and prints its figures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from taskflow_jobs import db, net
from taskflow_jobs.devstack.sendgrid_stub import StubServer
from taskflow_jobs.devstack.up import wait_for_worker
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from taskflow_jobs.webhooks.auth import sign
from tests.support.databases import TEMPLATE, create_database, drop_database
from tests.support.dispatch_helpers import API_KEY, signup
from tests.support.ha import ha_prefect, taskflow_jobs
from tests.support.slack_stub import SlackStub

PROJECT_DIR = Path(__file__).resolve().parents[2]
SECRET = "ha-webhook-secret-0123456789abcdef"
TRAFFIC_SECONDS = 20.0
KILL_AFTER = 6.0


def wait_for(condition, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def notification(n: int) -> bytes:
    data = {"to": f"ops{n}@example.com", "subject": f"note {n}", "body": "hi"}
    return json.dumps({"type": "notification", "data": data}).encode()


class Traffic(threading.Thread):
    """Signups (database trigger -> email) and signed /api/notify posts at a steady rate."""

    def __init__(self, database_url: str, receiver_url: str) -> None:
        super().__init__(name="ha-traffic", daemon=True)
        self.database_url = database_url
        self.receiver_url = receiver_url
        self.enqueued: dict[int, float] = {}  # job id -> time.time() it was committed
        self.refused: list[str] = []

    def run(self) -> None:
        end = time.monotonic() + TRAFFIC_SECONDS
        n = 0
        with db.connect(self.database_url, autocommit=True) as conn, httpx.Client() as http:
            while time.monotonic() < end:
                n += 1
                _, job = signup(conn, f"user{n}@example.com", f"User {n}")
                self.enqueued[job] = time.time()
                if n % 5 == 0:
                    body = notification(n)
                    headers = {"Content-Type": "application/json", **sign(SECRET, body)}
                    answer = http.post(f"{self.receiver_url}/api/notify", content=body,
                                       headers=headers, timeout=10)  # fmt: skip
                    if answer.status_code == 202:
                        self.enqueued[answer.json()["job_id"]] = time.time()
                    else:
                        self.refused.append(f"{answer.status_code} {answer.text[:200]}")
                time.sleep(0.1)


class HealthProbe(threading.Thread):
    """GET /api/health through nginx every 50 ms; counts the answers that were not 200."""

    def __init__(self, api_url: str) -> None:
        super().__init__(name="ha-probe", daemon=True)
        self.api_url = api_url
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.stop.is_set():
                try:
                    status = http.get(f"{self.api_url}/health").status_code
                except httpx.HTTPError as exc:
                    self.failed.append(type(exc).__name__)
                else:
                    if status == 200:
                        self.ok += 1
                    else:
                        self.failed.append(str(status))
                time.sleep(0.05)


def test_killing_an_api_replica_mid_traffic_loses_nothing(
    pg_admin_url: str,
    template_url: str,
    tmp_path: Path,
    sendgrid: StubServer,
    slack_webhook: SlackStub,
) -> None:
    name = f"ha_app_{os.getpid()}"
    database_url = create_database(pg_admin_url, name, TEMPLATE)
    try:
        with ha_prefect(pg_admin_url, tmp_path / "ha") as ha:
            figures = run_scenario(ha, database_url, tmp_path, sendgrid, slack_webhook)
    finally:
        drop_database(pg_admin_url, name)
    print("\n" + json.dumps({"ha": figures}))


def run_scenario(ha, database_url, tmp_path, sendgrid, slack):  # noqa: ANN001, ANN201
    receiver_port = net.free_port()
    env = {
        **ha.client_env,
        "DATABASE_URL": database_url,
        "TASKFLOW_DATA_DIR": str(tmp_path / "data"),
        "TASKFLOW_BLOCK_PREFIX": f"ha{uuid.uuid4().hex[:8]}",
        "EMAIL_PROVIDER": "sendgrid",
        "SENDGRID_API_URL": sendgrid.url,
        "SENDGRID_API_KEY": API_KEY,
        "SLACK_WEBHOOK_URL": slack.url,
        "ALERT_DEAD_LETTER_THRESHOLD": "2",
        "EMAIL_POLL_INTERVAL": "0.5",
        "EMAIL_BACKOFF_BASE": "1",
        "EMAIL_BACKOFF_CAP": "2",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PORT": str(receiver_port),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    deploy = subprocess.run(taskflow_jobs("deploy"), env={**os.environ, **env}, cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    sup = ha.supervisor
    worker_argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "taskflow-jobs",
                   "--type", "process", "--limit", "4"]  # fmt: skip
    sup.start("worker", worker_argv, env)
    consume = sup.start("consume", taskflow_jobs("consume"), env)
    receiver = sup.start("receiver", taskflow_jobs("webhooks"), env)
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    net.wait_for_http(f"{receiver_url}/healthz", 60, receiver.process, receiver.log_path)
    wait_for_worker(ha.api_url, sup)
    with db.connect(database_url, autocommit=True) as conn:  # warm-up: consume is running
        signup(conn, "first@example.com", "First")
    wait_for(lambda: sendgrid.stub.accepted(), 60, "the first email")

    probe = HealthProbe(ha.api_url)
    traffic = Traffic(database_url, receiver_url)
    probe.start()
    traffic.start()
    time.sleep(KILL_AFTER)
    delivered_before_kill = len(sendgrid.stub.accepted())
    killed_at = time.time()
    ha.kill_replica(0)

    # a deployment runs through the surviving replica and the worker
    from prefect.deployments import run_deployment

    started = time.monotonic()
    with ha.client():
        run = run_deployment("daily-stats/daily-stats", parameters={"date": "2026-02-14"},
                             timeout=240)  # fmt: skip
    assert run.state.is_completed(), run.state
    deployment_seconds = time.monotonic() - started

    # the dead-letter automation (events -> Redis -> triggers -> actions) alerts Slack
    alerts_before = len(slack.requests)
    with db.connect(database_url, autocommit=True) as conn:
        for n in range(2):
            queue.send(conn, EMAIL_QUEUE, {"type": "sms_blast", "n": n})
    dead_at = time.monotonic()
    wait_for(lambda: [r for r in slack.requests[alerts_before:] if "dead-lettered" in r.text],
             120, "the dead-letter alert in Slack")  # fmt: skip
    alert_seconds = time.monotonic() - dead_at

    traffic.join(TRAFFIC_SECONDS + 30)
    probe.stop.set()
    probe.join(10)
    expected = set(traffic.enqueued)

    def settled() -> bool:
        with db.connect(database_url) as conn:
            live = conn.execute("SELECT count(*) AS n FROM jobs.messages").fetchone()["n"]
        return live == 0 and expected <= {r.message_id for r in sendgrid.stub.accepted()}

    wait_for(settled, 120, "every enqueued email delivered")
    accepted = sendgrid.stub.accepted()
    delivered = {r.message_id for r in accepted}
    first_at: dict[int, float] = {}
    for r in accepted:
        first_at.setdefault(r.message_id, r.at)
    latencies_after = [first_at[j] - at for j, at in traffic.enqueued.items() if at > killed_at]
    latencies_before = [first_at[j] - at for j, at in traffic.enqueued.items() if at <= killed_at]
    with db.connect(database_url) as conn:
        dead = conn.execute("SELECT payload->>'type' AS t FROM jobs.dead_letters").fetchall()

    assert not traffic.refused, traffic.refused[:3]
    assert expected <= delivered, f"lost: {sorted(expected - delivered)[:10]}"
    assert [d["t"] for d in dead] == ["sms_blast", "sms_blast"]
    assert consume.process.poll() is None, ha.log("consume")
    assert receiver.process.poll() is None, ha.log("receiver")
    assert len(latencies_after) > 30, "traffic kept flowing after the kill"
    duplicates = len(accepted) - len(delivered)
    return {
        "enqueued": len(expected),
        "delivered": len(delivered & expected),
        "duplicates": duplicates,
        "delivered_before_kill": delivered_before_kill,
        "email_latency_p50_before_s": round(statistics.median(latencies_before), 3),
        "email_latency_p50_after_s": round(statistics.median(latencies_after), 3),
        "email_latency_max_after_s": round(max(latencies_after), 3),
        "health_probes_ok": probe.ok,
        "health_probes_failed": len(probe.failed),
        "health_probe_failures": sorted(set(probe.failed)),
        "deployment_run_after_kill_s": round(deployment_seconds, 1),
        "dead_letter_alert_s": round(alert_seconds, 1),
    }
