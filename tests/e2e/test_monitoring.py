"""Through the deployed system: automations alert Slack, webhooks trigger deployments,
and `taskflow-jobs status` / `runs` read the same Prefect API.

Uses the session `deployed` fixture (a real Prefect server on PostgreSQL, `taskflow-jobs
deploy`, a process worker) and its Slack stub, which the automations' notification block
posts to.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

from deployments import automations
from taskflow_jobs import db
from taskflow_jobs.devstack.sendgrid_stub import StubServer
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.support.dispatch_helpers import API_KEY
from tests.support.prefect_stack import Deployed
from tests.support.receiver import running_receiver
from tests.support.waiting import wait_for

CLI = str(Path(sys.executable).parent / "taskflow-jobs")


def slack_texts(deployed: Deployed) -> list[str]:
    return [r.text for r in deployed.slack.requests]


def test_deploy_creates_the_automations_on_the_alerts_block(deployed: Deployed) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    with deployed.server.client(), get_client(sync_client=True) as client:
        block = CustomWebhookNotificationBlock.load("taskflow-alerts", _sync=True)
        found = {a.name: a for a in client.read_automations()}
    for name in (automations.FAILED, automations.DEAD_LETTERS, automations.ZOMBIES):
        assert name in found, f"{name} missing; deploy said:\n{deployed.deploy_output}"
        assert found[name].enabled
    for name in (automations.FAILED, automations.DEAD_LETTERS):
        [action] = found[name].actions
        assert action.block_document_id == block._block_document_id
    zombie_trigger = found[automations.ZOMBIES].trigger
    assert zombie_trigger.posture == "Proactive"
    assert "prefect.flow-run.heartbeat" in zombie_trigger.after
    # a secret stays a secret: the block document does not show the URL
    assert deployed.slack.url not in json.dumps(block.model_dump(mode="json"), default=str)


def test_a_failed_run_is_alerted_to_slack_once(deployed: Deployed) -> None:
    before = len(deployed.slack.requests)  # earlier tests may have failed runs of that name
    run = deployed.run("daily-stats/daily-stats", {"date": "not-a-date"})
    assert run.state.is_failed()

    def alert() -> list[str]:  # its own alert (a later one lists recent failures too)
        return [t for t in slack_texts(deployed)[before:] if f"run {run.name} is " in t]

    [text] = wait_for(alert, 90, "the failure alert for " + run.name)
    assert "daily-stats" in text and "Failed" in text
    assert "not-a-date" in text, "the alert carries the run's failure message"
    # a barrier instead of a fixed sleep: a second failed run's alert comes after any
    # duplicate of the first (one automation, events in order)
    later = deployed.run("daily-stats/daily-stats", {"date": "still-not-a-date"})
    assert later.state.is_failed()
    wait_for(
        lambda: [t for t in slack_texts(deployed)[before:] if f"run {later.name} is " in t],
        90,
        "the later run's alert",
    )
    assert len(alert()) == 1, "one alert per failed run"


def test_dead_letters_over_the_threshold_alert_slack(deployed: Deployed) -> None:
    with db.connect(deployed.database_url, autocommit=True) as conn:
        for n in range(automations.AlertPolicy().dead_letter_threshold):
            queue.send(conn, EMAIL_QUEUE, {"type": "sms_blast", "n": n})
    run = deployed.run("email-dispatch/email-dispatch")
    assert run.state.is_failed() and run.state.name == "DeadLettered", run.state

    texts = wait_for(
        lambda: [t for t in slack_texts(deployed) if "dead-lettered" in t], 90, "the alert"
    )
    assert "sms_blast" in texts[-1] and "unknown message type" in texts[-1]
    assert "taskflow-jobs dlq redrive" in texts[-1]
    # the run itself is red in the history, but the per-run failure alert stays quiet:
    # dead letters alert by count, not once per run (checked after a later failure's
    # alert arrived, so a per-run alert for this run would have arrived too)
    later = deployed.run("daily-stats/daily-stats", {"date": "not-a-date-either"})
    wait_for(lambda: [t for t in slack_texts(deployed) if later.name in t], 90, "a later alert")
    assert not [t for t in slack_texts(deployed) if run.name in t]


def test_signed_report_request_runs_daily_stats_for_that_date(deployed: Deployed) -> None:
    day = "2026-02-14"
    with running_receiver(
        deployed.database_url, prefect_api_url=deployed.server.api_url
    ) as receiver:
        response = receiver.post("/api/events/report.requested", {"date": day})
        assert response.status_code == 202, response.text
        unsigned = receiver.post("/api/events/report.requested", {"date": day}, signed=False)
        assert unsigned.status_code == 401

    def finished_run():  # noqa: ANN202
        with deployed.server.client(), get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["daily-stats"]))
            )
        mine = [r for r in runs if r.parameters.get("date") == day]
        return next((r for r in mine if r.state and r.state.is_final()), None)

    run = wait_for(finished_run, 180, f"a daily-stats run for {day}")
    assert run.state.is_completed(), run.state
    with psycopg.connect(deployed.database_url) as conn:
        row = conn.execute("SELECT date FROM public.daily_stats WHERE date = %s", (day,))
        assert row.fetchone() is not None, "the requested day was computed"


def test_status_and_runs_read_queues_and_deployments(deployed: Deployed) -> None:
    env = {
        **os.environ,
        **deployed.server.env,
        "DATABASE_URL": deployed.database_url,
        "TASKFLOW_BLOCK_PREFIX": "taskflow",
    }
    done = subprocess.run(
        [CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    assert snap["prefect_error"] is None
    assert [q["queue"] for q in snap["queues"]] == [EMAIL_QUEUE]
    flows = {d["flow"]: d for d in snap["deployments"]}
    assert set(flows) == {
        "email-dispatch",
        "daily-stats",
        "health-check",
        "cleanup",
        "weekly-summary",
    }
    assert flows["daily-stats"]["schedules"] == ["0 1 * * * (UTC)"]
    assert flows["daily-stats"]["last_run"] is not None
    assert flows["health-check"]["next_run"] is not None

    table = subprocess.run([CLI, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "Queues" in table.stdout and "Deployments" in table.stdout

    runs = subprocess.run(
        [CLI, "runs", "--flow", "daily-stats", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert runs.returncode == 0, runs.stderr
    history = json.loads(runs.stdout)
    assert history and all(r["flow"] == "daily-stats" for r in history)
    bad = subprocess.run(
        [CLI, "runs", "--flow", "nope"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "unknown flow 'nope'" in bad.stderr


def test_consume_sends_with_the_provider_set_in_the_blocks(
    deployed: Deployed, sendgrid: StubServer, tmp_path: Path
) -> None:
    """An operator switches the provider in the UI; `consume` (no email settings in its
    environment, no DATABASE_URL either) follows the blocks like the flow runs do."""
    from blocks import TaskflowEmail

    with deployed.server.client():
        original = TaskflowEmail.load("taskflow-email", _sync=True)
        edited = original.model_copy(
            update={
                "email_provider": "sendgrid",
                "sendgrid_api_url": sendgrid.url,
                "sendgrid_api_key": API_KEY,
            }  # fmt: skip
        )
        edited.save("taskflow-email", overwrite=True, _sync=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "EMAIL_", "SENDGRID_", "PREFECT_"))
    }
    env.update(deployed.server.env, TASKFLOW_BLOCK_PREFIX="taskflow", TASKFLOW_DATA_DIR=str(
        Path(deployed.worker_env["TASKFLOW_DATA_DIR"])))  # fmt: skip
    log = tmp_path / "consume.log"
    with open(log, "wb") as out:
        consumer = subprocess.Popen([CLI, "consume"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
    try:
        # signup only once it listens: the worker's every-minute sweep must not be the
        # one sending it (and a SIGTERM before its handlers exist would just kill it)
        wait_for(lambda: "consuming email_notifications" in log.read_text(), 60, "consume")
        with db.connect(deployed.database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO auth.users (email, raw_user_meta_data)"
                " VALUES ('blocks@example.com', '{\"full_name\": \"Block\"}')"
            )
        wait_for(
            lambda: any(r.to == "blocks@example.com" for r in sendgrid.stub.accepted()),
            60,
            "the email through the SendGrid set in the block",
        )
    finally:
        consumer.terminate()
        consumer.wait(timeout=60)
        with deployed.server.client():
            original.save("taskflow-email", overwrite=True, _sync=True)
    output = log.read_text()
    assert consumer.returncode == 0, output
    assert "provider sendgrid" in output
    # a welcome goes out through the express lane or a burst, whichever claimed it first
    assert re.search(r"burst done: \{.*'sent': [1-9]", output) or re.search(
        r"express lane stopped after [1-9]", output
    ), "consume sent it"
    assert API_KEY not in output
