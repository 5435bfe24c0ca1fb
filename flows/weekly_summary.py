"""weekly-summary: the last 7 days of daily_stats plus email totals, to Slack."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.common import flow_settings, post_to_slack, skipped_for_this_run, too_late, with_skipped
from taskflow_jobs import db
from taskflow_jobs.monitoring.heartbeat import heartbeating
from taskflow_jobs.monitoring.prefect_api import WEEKLY_SUMMARY
from taskflow_jobs.reports import summaries
from taskflow_jobs.settings import EMAIL_QUEUE, load_settings


def _run_name() -> str:
    """`weekly-summary-to-2026-11-30`: named for the last day it summarises."""
    given = (flow_run.parameters or {}).get("week_ending")
    try:
        last = summaries.week_ending(given, load_settings().timezone)
    except ValueError:
        return f"{WEEKLY_SUMMARY}-to-{given}"  # the run itself fails and says why
    return f"{WEEKLY_SUMMARY}-to-{last}"


@flow(name=WEEKLY_SUMMARY, flow_run_name=_run_name, log_prints=True)
@heartbeating
def weekly_summary(week_ending: str | None = None, max_lateness_minutes: float = 720) -> dict:
    """Summarise the 7 days ending at `week_ending` (ISO date; default yesterday).

    A scheduled run that starts more than `max_lateness_minutes` late skips itself: a
    Monday summary posted on Wednesday helps nobody (run it by hand with a date instead).
    """
    if too_late(max_lateness_minutes):
        return {"skipped": "started too late"}
    skipped = skipped_for_this_run()
    logger = get_run_logger()
    settings = flow_settings()
    tz = settings.timezone
    last = summaries.week_ending(week_ending, tz)
    with db.connect(db.database_url(settings), autocommit=True) as conn:
        report = summaries.weekly(conn, last, tz, EMAIL_QUEUE)
    logger.info("%s: %s", report.title, report.figures)
    create_markdown_artifact(
        report.markdown + (f"\n\n_{skipped}_\n" if skipped else ""),
        key="weekly-summary",
        description=with_skipped(report.title, skipped),
    )
    post_to_slack(settings.slack_webhook_url, report.slack_text)
    return report.figures
