"""What every flow shares: its settings, posting to Slack, the late-start guard, and what
was skipped in a run's favour after an outage."""

from __future__ import annotations

import datetime as dt
import logging

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff
from pydantic import SecretStr

from blocks import BlockNames, settings_from_blocks
from taskflow_jobs.monitoring import backlog
from taskflow_jobs.reports import slack
from taskflow_jobs.settings import Settings, SettingsError, load_settings

# Deployments ship the library's loggers to the run's logs (PREFECT_LOGGING_EXTRA_LOGGERS in
# prefect.yaml); Prefect copies only handlers to them, so give them a level worth reading.
if logging.getLogger("taskflow_jobs").level == logging.NOTSET:
    logging.getLogger("taskflow_jobs").setLevel(logging.INFO)


def flow_settings() -> Settings:
    """The environment settings, with the Prefect blocks (edited in the UI) for what the
    environment leaves unset; a database is required (see `require_database`)."""
    return require_database(settings_from_blocks(load_settings()))


def require_database(settings: Settings) -> Settings:
    """Workers and consumers never start an embedded PostgreSQL: only `up` and `demo` do,
    and they hand its URL to their children."""
    if settings.database_url is None:
        block = BlockNames(settings.block_prefix).database
        raise SettingsError(
            f"no database configured: set DATABASE_URL or create the Prefect block {block!r}"
            " (`taskflow-jobs deploy` creates it from DATABASE_URL)"
        )
    return settings


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except Exception:  # called outside a run (unit tests, scripts)
        return logging.getLogger("flows")


@task(
    name="post-to-slack",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def post_to_slack(webhook_url: SecretStr | None, text: str) -> bool:
    """Post `text` to Slack; with no webhook configured, log it (the artifact keeps it).

    slack_sdk already retried 429 / 5xx / connection errors; what still fails raises, and
    this task retries it after 10 s, 20 s, 40 s (±50%).
    """
    logger = _logger()
    if webhook_url is None or not webhook_url.get_secret_value():
        logger.info("SLACK_WEBHOOK_URL is not set: not posting to Slack. Message:\n%s", text)
        return False
    slack.post(webhook_url, text)
    logger.info("posted to Slack (%d characters)", len(text))
    return True


def scheduled_lateness() -> dt.timedelta:
    """How long after its scheduled time this flow run started (zero outside a run)."""

    scheduled = flow_run.scheduled_start_time
    return max(dt.timedelta(0), dt.datetime.now(dt.UTC) - scheduled)


def too_late(max_lateness_minutes: float | None) -> bool:
    """True (with a log line) when the run started more than `max_lateness_minutes` late."""
    if not max_lateness_minutes or max_lateness_minutes <= 0:
        return False
    late = scheduled_lateness()
    if late > dt.timedelta(minutes=max_lateness_minutes):
        _logger().warning(
            "skipping: this run started %.0f min after its scheduled time (limit %g min); "
            "its result would be stale and the next scheduled run is due soon",
            late.total_seconds() / 60,
            max_lateness_minutes,
        )
        return True
    return False


def skipped_for_this_run() -> str | None:
    """What was skipped in this run's favour (older runs of its deployment that fell due
    while no worker polled, see taskflow_jobs.monitoring.backlog), logged here once; the
    flow adds it to its artifact. None when nothing was skipped or outside a run."""
    run_id = flow_run.id
    if not run_id:
        return None
    try:
        note = backlog.note_for(run_id)
    except Exception:  # best effort: the run's own work goes on
        return None
    if note is None:
        return None
    text = note.text()
    _logger().info("%s: no worker ran them in time; this run does their work", text)
    return text


def with_skipped(description: str, skipped: str | None) -> str:
    """An artifact's description, with what was skipped in the run's favour."""
    return f"{description}; {skipped}" if skipped else description
