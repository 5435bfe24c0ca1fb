"""weekly-summary: the last 7 days of daily_stats plus email totals, to Slack."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.common import flow_settings, post_to_slack, too_late
from taskflow_jobs import db
from taskflow_jobs.monitoring.heartbeat import heartbeating
from taskflow_jobs.monitoring.prefect_api import WEEKLY_SUMMARY
from taskflow_jobs.reports import summaries
from taskflow_jobs.settings import EMAIL_QUEUE


def _run_name() -> str:

    last = (flow_run.parameters or {}).get("week_ending")
    return f"weekly-summary-to-{last}" if last else "weekly-summary-last-7-days"


@flow(name=WEEKLY_SUMMARY, flow_run_name=_run_name, log_prints=True)
@heartbeating
def weekly_summary(week_ending: str | None = None, max_lateness_minutes: float = 720) -> dict:
    """Summarise the 7 days ending at `week_ending` (ISO date; default yesterday).

    A scheduled run that starts more than `max_lateness_minutes` late skips itself: a
    Monday summary posted on Wednesday helps nobody (run it by hand with a date instead).
    """
    if too_late(max_lateness_minutes):
        return {"skipped": "started too late"}
    logger = get_run_logger()
    settings = flow_settings()
    tz = settings.timezone
    last = summaries.week_ending(week_ending, tz)
    with db.connect(db.database_url(settings), autocommit=True) as conn:
        report = summaries.weekly(conn, last, tz, EMAIL_QUEUE)
    logger.info("%s: %s", report.title, report.figures)
    create_markdown_artifact(report.markdown, key="weekly-summary", description=report.title)
    post_to_slack(settings.slack_webhook_url, report.slack_text)
    return report.figures
