"""The cron flows run in-process against the session's real Prefect server and PostgreSQL,
posting to a local Slack stub. Each test has blocks of its own prefix (`prefect_api`)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from flows.cleanup import cleanup
from flows.common import post_to_slack
from flows.daily_stats import daily_stats
from flows.health_check import health_check
from flows.weekly_summary import weekly_summary
from taskflow_jobs import db
from taskflow_jobs.monitoring import health
from taskflow_jobs.net import free_port
from taskflow_jobs.settings import load_settings


def artifacts_of(state) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    return {a.key: a for a in found}


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, slack_webhook, data_dir):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack_webhook.url)
    monkeypatch.setenv("TASKFLOW_DATA_DIR", str(data_dir))
    monkeypatch.setenv("APP_TIMEZONE", "Europe/Berlin")
    return monkeypatch


def test_daily_stats_reports_to_slack_and_an_artifact(
    prefect_api, app_env, database_url, slack_webhook
) -> None:
    day = dt.date.today() - dt.timedelta(days=2)
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.tasks (title, created_at)"
            " SELECT 't', (%s::date + time '12:00') AT TIME ZONE 'Europe/Berlin'"
            " FROM generate_series(1, 5)",
            (day,),
        )
    state = daily_stats(date=day.isoformat(), return_state=True)

    assert state.is_completed()
    figures = state.result()
    assert figures["new_tasks"] == 5 and figures["date"] == day.isoformat()
    assert len(figures["filled"]) == 6  # a fresh database: the rest of the week was missing
    (post,) = slack_webhook.delivered
    assert post.text.startswith(f"*Daily stats for {day:%a %d %b %Y} (Europe/Berlin)*")
    artifact = artifacts_of(state)["daily-stats-report"]
    assert artifact.type == "markdown" and "| New tasks | 5 |" in artifact.data
    assert slack_webhook.url not in artifact.data


def test_without_slack_everything_still_runs(prefect_api, app_env, slack_webhook) -> None:
    app_env.delenv("SLACK_WEBHOOK_URL")
    state = daily_stats(return_state=True)
    assert state.is_completed()
    assert "daily-stats-report" in artifacts_of(state)
    assert slack_webhook.requests == []


def test_a_malformed_date_fails_the_run_with_a_clear_message(prefect_api, app_env) -> None:
    state = daily_stats(date="31/03/2024", return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="ISO date such as 2024-03-31"):
        state.result()


def test_the_slack_task_retries_what_slack_sdk_gave_up_on(prefect_api, slack_webhook) -> None:
    from pydantic import SecretStr

    for _ in range(3):  # slack_sdk tries 3 times (1 + 2 retries): the first task run fails
        slack_webhook.answer(500, "down")
    from prefect import flow

    quick = post_to_slack.with_options(retry_delay_seconds=0.2, retry_jitter_factor=None)

    @flow(name="slack-retry-test")
    def post() -> bool:
        return quick(SecretStr(slack_webhook.url), "hello")

    assert post() is True
    assert [r.status for r in slack_webhook.requests] == [500, 500, 500, 200]


def test_health_check_alerts_once_per_incident_and_resolves(
    prefect_api, app_env, database_url, slack_webhook
) -> None:
    app_env.setenv("HEALTH_MAX_FAILED_RUNS", "100000")  # other tests' runs share this server
    app_env.setenv("HEALTH_MAX_LATE_RUNS", "100000")
    app_env.setenv("DATABASE_URL", f"postgresql://app:pw@127.0.0.1:{free_port()}/x")

    first = health_check()
    second = health_check()
    app_env.setenv("DATABASE_URL", database_url)
    third = health_check()
    fourth = health_check()

    assert first["opened"] == ["database_unreachable"] and not first["healthy"]
    assert second["opened"] == [] and second["problems"] == ["database_unreachable"]
    assert third["resolved"] == ["database_unreachable"] and third["healthy"]
    assert fourth == {"healthy": True, "problems": [], "opened": [], "resolved": []}
    alert, resolved = (r.text for r in slack_webhook.delivered)
    assert "1 new problem" in alert and "Database unreachable" in alert
    assert "resolved" in resolved and "Database unreachable" in resolved


def test_failed_and_late_runs_of_our_flows_are_problems(prefect_api, app_env) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    since = dt.datetime.now(dt.UTC)
    assert daily_stats(date="not-a-date", return_state=True).is_failed()
    with get_client(sync_client=True) as client:
        late = client.create_flow_run(
            cleanup, state=Scheduled(scheduled_time=since - dt.timedelta(hours=1))
        )
        try:
            deadline = time.monotonic() + 60
            while client.read_flow_run(late.id).state.name != "Late":
                assert time.monotonic() < deadline, "the server never marked the run Late"
                time.sleep(0.5)
            checks = health.check_flow_runs(load_settings(), since)
        finally:
            client.delete_flow_run(late.id)

    found = {c.problem.key: c.problem.summary for c in checks if c.problem}
    assert "daily-stats/daily-stats-not-a-date (Failed)" in found["failed_runs"]
    assert f"cleanup/{late.name} (Late)" in found["late_runs"]


def test_weekly_summary_and_cleanup_publish_their_reports(
    prefect_api, app_env, database_url, slack_webhook
) -> None:
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.audit_log (action, entity, created_at)"
            " SELECT 'x', 'task', now() - interval '100 days' FROM generate_series(1, 30)"
        )
    weekly = weekly_summary(week_ending="2024-04-14", return_state=True)
    cleaned = cleanup(return_state=True)

    assert weekly.is_completed() and cleaned.is_completed()
    assert weekly.result()["last"] == "2024-04-14"
    assert "Weekly summary 2024-04-08 to 2024-04-14" in slack_webhook.delivered[0].text
    assert "weekly-summary" in artifacts_of(weekly)
    assert cleaned.result()["public.audit_log"] == 30
    table = artifacts_of(cleaned)["cleanup-report"]
    assert table.type == "table" and "public.audit_log" in table.data
