"""health-check: database, queues, dead letters and flow runs; alert once per incident."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from flows.common import flow_settings, post_to_slack, skipped_for_this_run, too_late, with_skipped
from taskflow_jobs.monitoring import health, incidents
from taskflow_jobs.monitoring.heartbeat import heartbeating
from taskflow_jobs.monitoring.prefect_api import HEALTH_CHECK

FIRST_LOOKBACK = dt.timedelta(hours=1)


def _run_name() -> str:

    return f"health-check-{flow_run.scheduled_start_time:%Y-%m-%dT%H:%MZ}"


@flow(name=HEALTH_CHECK, flow_run_name=_run_name, log_prints=True)
@heartbeating
def health_check(max_lateness_minutes: float = 30) -> dict:
    """Check everything, publish a table artifact, and post to Slack only on a change:
    a new problem opens an incident (one alert), a cleared one posts "resolved".

    A run that starts more than `max_lateness_minutes` late skips itself: the next
    hourly run is nearly due and would report the same thing.
    """
    if too_late(max_lateness_minutes):
        return {"skipped": "started too late"}
    skipped = skipped_for_this_run()
    logger = get_run_logger()
    settings = flow_settings()
    store = incidents.VariableStore(f"{settings.block_prefix}-health-state")
    state = store.load()
    now = dt.datetime.now(dt.UTC)
    report = health.run_checks(settings, state.last_checked_at or now - FIRST_LOOKBACK, now=now)
    new_state, change = incidents.advance(state, report.problems, now)

    create_table_artifact(
        report.table(),
        key="health-check",
        description=with_skipped(
            f"{len(report.problems)} problem(s); "
            f"{len(change.opened)} new, {len(change.resolved)} resolved",
            skipped,
        ),
    )
    for problem in report.problems:
        logger.warning("problem: %s", problem.summary)
    if change.opened:
        text = incidents.alert_text(change, now)
        if change.resolved:
            text += "\n" + incidents.resolved_text(change, now)
        post_to_slack(settings.slack_webhook_url, text)
    elif change.resolved:
        post_to_slack(settings.slack_webhook_url, incidents.resolved_text(change, now))
    store.save(new_state)  # after posting: an alert that failed to post is tried again next hour
    logger.info(
        "%s; %d open incident(s), %d new, %d resolved",
        "healthy" if report.healthy else f"{len(report.problems)} problem(s)",
        len(new_state.open),
        len(change.opened),
        len(change.resolved),
    )
    return {
        "healthy": report.healthy,
        "problems": [p.key for p in report.problems],
        "opened": [i.key for i in change.opened],
        "resolved": [i.key for i in change.resolved],
    }
