"""daily-stats: yesterday's (or a given day's) figures, catch-up, report to Slack."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from blocks import connector_for
from flows.common import flow_settings, post_to_slack, skipped_for_this_run, with_skipped
from taskflow_jobs import db
from taskflow_jobs.monitoring.heartbeat import heartbeating
from taskflow_jobs.monitoring.prefect_api import DAILY_STATS
from taskflow_jobs.reports import summaries
from taskflow_jobs.reports.stats import InvalidDate, resolve_day
from taskflow_jobs.settings import load_settings


def run_name_for(date: str | None, tz: ZoneInfo) -> str:
    """`daily-stats-2026-11-27`: named for the day it reports, decided before it starts
    (`up` and `demo` pass the same name when they request a run)."""
    try:
        return f"{DAILY_STATS}-{resolve_day(date, tz)}"
    except InvalidDate:
        return f"{DAILY_STATS}-{date}"  # the run itself fails and says why


def _run_name() -> str:
    return run_name_for((flow_run.parameters or {}).get("date"), load_settings().timezone)


@flow(name=DAILY_STATS, flow_run_name=_run_name, log_prints=True)
@heartbeating
def daily_stats(date: str | None = None, catch_up_days: int | None = None) -> dict:
    """Count new tasks, completed tasks and new users for one day in APP_TIMEZONE.

    `date`: ISO date (e.g. 2024-03-31); None or "" means yesterday. Every day of the
    `catch_up_days` (default STATS_CATCHUP_DAYS) days ending at it that has no row yet is
    filled too. The report goes to a markdown artifact and to Slack.
    """
    skipped = skipped_for_this_run()
    logger = get_run_logger()
    settings = flow_settings()
    tz = settings.timezone
    day = resolve_day(date, tz)
    days = catch_up_days or settings.stats_catchup_days
    url = db.database_url(settings)
    # the report's history comes through the database block's engine, with pandas
    engine = connector_for(url).get_engine()
    try:
        with db.connect(url, autocommit=True) as conn:
            result = summaries.daily(conn, day, tz, days, engine)
    finally:
        engine.dispose()
    stats = result.run.stats
    logger.info(
        "%s (%s): %d new tasks, %d completed, %d new users; caught up %d missing day(s)",
        day,
        tz.key,
        stats.new_tasks,
        stats.completed_tasks,
        stats.new_users,
        len(result.run.filled),
    )
    create_markdown_artifact(
        result.report.markdown + (f"\n\n_{skipped}_\n" if skipped else ""),
        key="daily-stats-report",
        description=with_skipped(result.report.title, skipped),
    )
    post_to_slack(settings.slack_webhook_url, result.report.slack_text)
    return result.report.figures
