"""cleanup: delete expired audit log, queue history and idempotency keys in short batches."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from flows.common import flow_settings, skipped_for_this_run, with_skipped
from taskflow_jobs import db
from taskflow_jobs.jobs import retention as cleaning
from taskflow_jobs.monitoring.heartbeat import heartbeating
from taskflow_jobs.monitoring.prefect_api import CLEANUP


def _run_name() -> str:

    return f"cleanup-{flow_run.scheduled_start_time:%Y-%m-%d}"


@flow(name=CLEANUP, flow_run_name=_run_name, log_prints=True)
@heartbeating
def cleanup(vacuum: bool = True) -> dict:
    """Delete rows past their retention (CLEANUP_*_DAYS), each batch its own short
    transaction so the application keeps writing; then VACUUM (ANALYZE) what shrank."""
    skipped = skipped_for_this_run()
    logger = get_run_logger()
    settings = flow_settings()
    now = dt.datetime.now(dt.UTC)
    results = cleaning.run_cleanup(
        settings, db.database_url(settings), now=now, vacuum_tables=vacuum
    )
    total = sum(r.deleted for r in results)
    create_table_artifact(
        [r.row() for r in results],
        key="cleanup-report",
        description=with_skipped(f"{total:,} expired row(s) deleted", skipped),
    )
    for r in results:
        logger.info(
            "%s: %d deleted in %d batch(es), longest %.3f s",
            r.table,
            r.deleted,
            r.batches,
            r.longest_batch_seconds,
        )
    return {r.table: r.deleted for r in results}
