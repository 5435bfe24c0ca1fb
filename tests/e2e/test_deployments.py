"""`taskflow-jobs deploy` against a real Prefect server, and daily-stats run by a real worker."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import psycopg

from taskflow_jobs import db
from tests.support.prefect_stack import PROJECT_DIR

EXPECTED = {
    "daily-stats": ("0 1 * * *", 1),
    "health-check": ("0 * * * *", 1),
    "cleanup": ("0 2 * * 0", 1),
    "weekly-summary": ("0 0 * * 1", 1),
}


def test_every_deployment_has_its_schedule_pool_and_concurrency(deployed) -> None:
    from prefect.client.orchestration import get_client

    with deployed.server.client(), get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        flows = {d.name: client.read_flow(d.flow_id).name for d in deployments.values()}
        project_dir = client.read_variable_by_name("taskflow_project_dir")
        blocks = {b.name for b in client.read_block_documents()}

    assert set(EXPECTED) | {"email-dispatch"} <= set(deployments), deployed.deploy_output
    # email-dispatch has no schedule: it runs when the receiver finds overdue email
    sweep = deployments["email-dispatch"]
    assert sweep.schedules == [] and sweep.work_pool_name == "taskflow-jobs"
    assert sweep.global_concurrency_limit.limit == 1
    assert sweep.concurrency_options.collision_strategy.value == "ENQUEUE"
    for name, (cron, limit) in EXPECTED.items():
        d = deployments[name]
        assert flows[name] == name
        assert d.work_pool_name == "taskflow-jobs"
        assert len(d.schedules) == 1
        schedule = d.schedules[0]
        assert schedule.active
        assert schedule.schedule.cron == cron
        assert schedule.schedule.timezone == "UTC"
        ZoneInfo(schedule.schedule.timezone)  # an IANA name
        assert any("set_working_directory" in step for s in d.pull_steps for step in s)
        if limit is not None:
            assert d.global_concurrency_limit.limit == limit
            assert d.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert project_dir is not None and project_dir.value == str(PROJECT_DIR)
    assert {"taskflow-email", "taskflow-slack", "taskflow-database"} <= blocks
    assert deployed.slack.url not in deployed.deploy_output
    assert "work pool 'taskflow-jobs': created" in deployed.deploy_output
    assert "deployed 5 deployment(s)" in deployed.deploy_output
    assert "daily-stats/daily-stats" in deployed.deploy_output


def test_daily_stats_runs_through_the_worker(deployed) -> None:
    tz = ZoneInfo("UTC")
    day = dt.date.today() - dt.timedelta(days=3)
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=tz)
    with psycopg.connect(deployed.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.tasks (title, created_at) SELECT 'e2e ' || i, %s"
            " FROM generate_series(1, 7) AS i",
            (noon,),
        )
    flow_run = deployed.run("daily-stats/daily-stats", {"date": day.isoformat()})

    assert flow_run.state.is_completed(), (flow_run.state, deployed.worker_log())
    assert flow_run.name == f"daily-stats-{day.isoformat()}"
    with db.connect(deployed.database_url) as conn:
        row = conn.execute("SELECT * FROM public.daily_stats WHERE date = %s", (day,)).fetchone()
    assert row["new_tasks"] == 7
    posts = deployed.slack.wait_for(1)
    assert any(day.strftime("%d %b %Y") in p.text for p in posts)
    logs = deployed.run_logs(flow_run.id, "posted")
    assert "posted" in logs and "characters to Slack webhook http://127.0.0.1:" in logs
    assert "s3cretWebhookToken" not in logs


def test_a_health_check_that_starts_hours_late_skips_itself(deployed) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    scheduled = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with deployed.server.client(), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("health-check/health-check")
        run = client.create_flow_run_from_deployment(
            deployment.id, state=Scheduled(scheduled_time=scheduled)
        )
        deadline = time.monotonic() + 120
        while not (state := client.read_flow_run(run.id).state).is_final():
            assert time.monotonic() < deadline, deployed.worker_log()
            time.sleep(1)
    assert state.is_completed(), (state, deployed.worker_log())
    messages = deployed.run_logs(run.id, "skipping")
    assert "skipping: this run started 120 min after its scheduled time" in messages
    assert "problem:" not in messages  # it checked nothing
