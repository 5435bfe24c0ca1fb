"""Weekly cleanup: delete expired rows in short batches, then VACUUM (ANALYZE).

One big `DELETE` of millions of rows holds its transaction (and its row locks, and the
oldest snapshot that stops autovacuum everywhere) for as long as it runs. Here every
batch is its own autocommit statement of a few thousand rows, sized to take about
`cleanup_batch_seconds`: the size doubles while batches are quick and shrinks when one
runs long, and a `statement_timeout` cancels a batch that would run far longer (it is
retried at half the size). The application keeps writing in between. Each batch starts
at the timestamp where the previous one stopped (keyset), so it never re-reads the index
entries of rows already deleted: the whole cleanup stays linear in the rows removed.

`VACUUM` cannot run inside a transaction; it runs afterwards on an autocommit connection.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from taskflow_jobs import db
from taskflow_jobs.settings import Settings
from taskflow_jobs.sql import query

log = logging.getLogger(__name__)

APPLICATION_NAME = "taskflow-cleanup"
MIN_BATCH = 100
MAX_BATCH = 100_000


@dataclass(frozen=True)
class Retention:
    table: str
    days: int
    delete_query: str
    vacuum_query: str


def retentions(settings: Settings) -> list[Retention]:
    return [
        Retention(
            "public.audit_log",
            settings.cleanup_audit_log_days,
            "delete_expired_audit_log",
            "vacuum_audit_log",
        ),
        Retention(
            "jobs.archive",
            settings.cleanup_archive_days,
            "delete_expired_archive",
            "vacuum_archive",
        ),
        Retention(
            "jobs.dead_letters",
            settings.cleanup_dead_letter_days,
            "delete_expired_dead_letters",
            "vacuum_dead_letters",
        ),
        Retention(
            "jobs.idempotency_keys",
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


def _next_size(size: int, elapsed: float, target: float) -> int:
    """Aim the next batch at `target` seconds from the rate of the last one."""
    if elapsed <= 0:
        return min(size * 2, MAX_BATCH)
    scaled = int(size * target / elapsed)
    return max(MIN_BATCH, min(scaled, size * 2, MAX_BATCH))


def purge(
    conn: psycopg.Connection,
    retention: Retention,
    *,
    now: dt.datetime,
    batch_size: int = 5000,
    target_seconds: float = 0.25,
    on_batch: Callable[[int, float], None] | None = None,
) -> PurgeResult:
    """Delete the rows of `retention.table` older than its retention, batch after batch.

    `conn` must be in autocommit mode: each DELETE is then its own short transaction.
    """
    if not conn.autocommit:
        raise ValueError("purge needs an autocommit connection (one transaction per batch)")
    cutoff = now - dt.timedelta(days=retention.days)
    result = PurgeResult(retention.table, cutoff)
    set_batch_limits(conn, target_seconds)
    size = max(MIN_BATCH, batch_size)
    after = dt.datetime.min.replace(tzinfo=dt.UTC)  # keyset: where the next batch starts
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        params = {"cutoff": cutoff, "limit": size, "after": after}
        try:
            row = conn.execute(query(retention.delete_query), params).fetchone()
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
            result.timeouts += 1
            if size <= MIN_BATCH and result.timeouts > 10:
                raise
            log.warning(
                "%s: batch of %d cancelled (%s); halving", retention.table, size, type(exc).__name__
            )
            size = max(MIN_BATCH, size // 2)
            continue
        elapsed = time.perf_counter() - t0
        result.deleted += row["deleted"]
        result.batches += 1
        result.batch_seconds.append(elapsed)
        result.longest_batch_seconds = max(result.longest_batch_seconds, elapsed)
        if on_batch:
            on_batch(row["deleted"], elapsed)
        stuck = row["last"] == after and not row["deleted"]  # only kept rows at the boundary
        if row["scanned"] < size or row["last"] is None or stuck:
            break
        after = row["last"]
        size = _next_size(size, elapsed, target_seconds)
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


def set_batch_limits(conn: psycopg.Connection, target_seconds: float) -> None:
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


def vacuum(conn: psycopg.Connection, retention: Retention) -> float:
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
