"""Retention of every table we own: the weekly cleanup, and the receipts' expiry.

Weekly cleanup: delete expired rows in short batches, then VACUUM (ANALYZE).

One big `DELETE` of millions of rows holds its transaction (and its row locks, and the
oldest snapshot that stops autovacuum everywhere) for as long as it runs. Here every
batch is its own autocommit `DELETE` of one time window `[lo, hi)` of the table's
timestamp column: a plain index range scan, the cheapest way to delete a slice. The
first window holds about `cleanup_batch_size` rows; then each window is sized from the
last one's speed to take about `cleanup_batch_seconds` (at most twice as long, or half as
long), empty stretches are skipped, and a `statement_timeout` cancels a window that
would run far longer (it is retried at half the length). The application keeps writing
in between, and the whole cleanup stays linear in the rows removed.

`VACUUM` cannot run inside a transaction; it runs afterwards on an autocommit connection.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from taskflow_jobs import db
from taskflow_jobs.db import Connection
from taskflow_jobs.settings import Settings
from taskflow_jobs.sql import query

log = logging.getLogger(__name__)

APPLICATION_NAME = "taskflow-cleanup"
# expired receipts are kept this much longer, in case the database clock runs behind ours
RECEIPT_EXPIRY_MARGIN = dt.timedelta(minutes=10)
MIN_WINDOW = dt.timedelta(milliseconds=1)


@dataclass(frozen=True)
class Retention:
    table: str
    column: str
    days: int
    delete_query: str
    vacuum_query: str
    label: str | None = None  # the name reports show, if not the table's
    nth_query: str = "cleanup_nth_at"  # sizes the first window (in rows, or in messages)

    def template(self, name: str) -> sql.Composed:
        schema, table = self.table.split(".")
        return sql.SQL(query(name)).format(
            table=sql.Identifier(schema, table), column=sql.Identifier(self.column)
        )


def retentions(settings: Settings) -> list[Retention]:
    return [
        Retention(
            "public.audit_log",
            "created_at",
            settings.cleanup_audit_log_days,
            "delete_expired_audit_log",
            "vacuum_audit_log",
        ),
        Retention(
            "jobs.archive_batches",
            "finalized_at",
            settings.cleanup_archive_days,
            "delete_expired_archive",
            "vacuum_archive",
            label="jobs.archive",  # the view users read; `deleted` counts its messages
            nth_query="cleanup_nth_at_messages",
        ),
        Retention(
            "jobs.dead_letters",
            "dead_lettered_at",
            settings.cleanup_dead_letter_days,
            "delete_expired_dead_letters",
            "vacuum_dead_letters",
        ),
        Retention(
            "jobs.idempotency_keys",
            "created_at",
            settings.cleanup_idempotency_key_days,
            "delete_expired_idempotency_keys",
            "vacuum_idempotency_keys",
        ),
    ]


@dataclass
class PurgeResult:
    table: str
    cutoff: dt.datetime
    deleted: int = 0
    batches: int = 0
    timeouts: int = 0
    longest_batch_seconds: float = 0.0
    seconds: float = 0.0
    vacuum_seconds: float | None = None
    batch_seconds: list[float] = field(default_factory=list, repr=False)

    def row(self) -> dict[str, object]:
        return {
            "table": self.table,
            "older than": self.cutoff.strftime("%Y-%m-%d %H:%M UTC"),
            "deleted": self.deleted,
            "batches": self.batches,
            "longest batch (s)": round(self.longest_batch_seconds, 3),
            "delete time (s)": round(self.seconds, 2),
            "vacuum time (s)": None
            if self.vacuum_seconds is None
            else round(self.vacuum_seconds, 2),
        }


def _next_window(window: dt.timedelta, elapsed: float, target: float) -> dt.timedelta:
    """Aim the next window at `target` seconds from the speed of the last one."""
    factor = 2.0 if elapsed <= 0 else min(2.0, max(0.5, target / elapsed))
    return max(MIN_WINDOW, window * factor)


def _at(conn: Connection, statement: sql.Composed, params: dict) -> dt.datetime | None:
    row = conn.execute(statement, params).fetchone()
    return row["at"] if row else None


def purge(
    conn: Connection,
    retention: Retention,
    *,
    now: dt.datetime,
    batch_size: int = 5000,
    target_seconds: float = 0.25,
    on_batch: Callable[[int, float], None] | None = None,
) -> PurgeResult:
    """Delete the rows of `retention.table` older than its retention, window after window.

    `conn` must be in autocommit mode: each DELETE is then its own short transaction.
    """
    if not conn.autocommit:
        raise ValueError("purge needs an autocommit connection (one transaction per batch)")
    cutoff = now - dt.timedelta(days=retention.days)
    result = PurgeResult(retention.label or retention.table, cutoff)
    set_batch_limits(conn, target_seconds)
    next_at, nth_at = retention.template("cleanup_next_at"), retention.template(retention.nth_query)
    started = time.perf_counter()
    lo = _at(conn, next_at, {"after": dt.datetime.min.replace(tzinfo=dt.UTC), "cutoff": cutoff})
    if lo is not None:
        end = _at(conn, nth_at, {"after": lo, "cutoff": cutoff, "rows": max(1, batch_size)})
        window = max(MIN_WINDOW, (end or cutoff) - lo)
    while lo is not None and lo < cutoff:
        hi = min(cutoff, lo + window)
        t0 = time.perf_counter()
        try:
            cursor = conn.execute(
                query(retention.delete_query), {"lo": lo, "hi": hi, "cutoff": cutoff}
            )
            # a query that counts for itself (the archive's batches) says how many it deleted
            deleted = cursor.fetchone()["deleted"] if cursor.description else cursor.rowcount
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
            result.timeouts += 1
            if window <= MIN_WINDOW and result.timeouts > 10:
                raise
            log.warning(
                "%s: window of %s cancelled (%s); halving", retention.table, window,
                type(exc).__name__,
            )  # fmt: skip
            window = max(MIN_WINDOW, window / 2)
            continue
        elapsed = time.perf_counter() - t0
        result.deleted += deleted
        result.batches += 1
        result.batch_seconds.append(elapsed)
        result.longest_batch_seconds = max(result.longest_batch_seconds, elapsed)
        if on_batch:
            on_batch(deleted, elapsed)
        window = _next_window(window, elapsed, target_seconds)
        # the next expired row at or after `hi`: skips empty stretches, ends when none is left
        lo = _at(conn, next_at, {"after": hi, "cutoff": cutoff}) if hi < cutoff else None
    result.seconds = time.perf_counter() - started
    log.info(
        "%s: deleted %d rows older than %s in %d batches (%.1f s)",
        retention.table,
        result.deleted,
        cutoff.isoformat(),
        result.batches,
        result.seconds,
    )
    return result


def set_batch_limits(conn: Connection, target_seconds: float) -> None:
    """Cancel a batch that runs 4x past its target (at least 1 s); wait <= 1 s for a lock."""
    timeout_ms = int(max(1.0, 4 * target_seconds) * 1000)
    conn.execute(
        query("cleanup_batch_limits"),
        {
            "statement_timeout": str(timeout_ms),
            "lock_timeout": "1000",
            "application_name": APPLICATION_NAME,
        },
    )


def vacuum(conn: Connection, retention: Retention) -> float:
    """VACUUM (ANALYZE) one table (no timeout); returns the seconds it took."""
    conn.execute(query("cleanup_vacuum_limits"))
    started = time.perf_counter()
    conn.execute(query(retention.vacuum_query))
    return time.perf_counter() - started


def run_cleanup(
    settings: Settings, url: str, *, now: dt.datetime | None = None, vacuum_tables: bool = True
) -> list[PurgeResult]:
    """Purge every table by its retention, then vacuum the ones that lost rows."""
    now = now or dt.datetime.now(dt.UTC)
    results = []
    with db.connect(url, autocommit=True) as conn:
        for retention in retentions(settings):
            result = purge(
                conn,
                retention,
                now=now,
                batch_size=settings.cleanup_batch_size,
                target_seconds=settings.cleanup_batch_seconds,
            )
            if vacuum_tables and result.deleted:
                result.vacuum_seconds = vacuum(conn, retention)
            results.append(result)
    return results


async def expire_receipts(pool: AsyncConnectionPool, limit: int = 10_000) -> int:
    """Delete webhook receipts that expired RECEIPT_EXPIRY_MARGIN ago; returns how many.

    The receiver runs this every minute: receipts only exist to refuse replays and
    duplicate deliveries within their window.
    """
    before = dt.datetime.now(dt.UTC) - RECEIPT_EXPIRY_MARGIN
    async with pool.connection() as conn:
        cur = await conn.execute(
            query("webhook_receipts_expire"), {"before": before, "limit": limit}
        )
        return cur.rowcount
