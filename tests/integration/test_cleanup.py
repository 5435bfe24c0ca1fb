"""cleanup against a real PostgreSQL: exactly the expired rows go, in committed batches."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from taskflow_jobs import db
from taskflow_jobs.jobs import queue, retention
from taskflow_jobs.settings import EMAIL_QUEUE, load_settings

NOW = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)


def ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def ids(conn: psycopg.Connection, sql: str) -> set:
    return {row["id"] for row in conn.execute(sql)}


def seed_audit_log(conn: psycopg.Connection, ages: list[float]) -> dict[int, float]:
    rows = conn.execute(
        "INSERT INTO public.audit_log (action, entity, created_at)"
        " SELECT 'update', 'task', t FROM unnest(%s::timestamptz[]) AS t RETURNING id, created_at",
        ([ago(a) for a in ages],),
    ).fetchall()
    return {r["id"]: (NOW - r["created_at"]).total_seconds() / 86400 for r in rows}


def seed_queue_history(conn: psycopg.Connection) -> dict[str, set]:
    """Archived and dead-lettered messages of various ages, keys for live and finished ones."""
    keyed = {}
    for name in ("old_acked", "new_acked", "old_dead", "new_dead", "old_live"):
        keyed[name] = queue.send(
            conn, EMAIL_QUEUE, {"type": "welcome_email"}, idempotency_key=f"key:{name}"
        )
    conn.execute("UPDATE jobs.idempotency_keys SET created_at = %s", (ago(60),))
    batch = queue.claim(conn, EMAIL_QUEUE, 10, 60)
    by_id = {m.id: m for m in batch.messages}
    queue.ack(conn, batch.token, [keyed["old_acked"]], now=ago(45))
    queue.ack(conn, batch.token, [keyed["new_acked"]], now=ago(5))
    queue.dead_letter(conn, batch.token, keyed["old_dead"], "permanent", now=ago(31))
    queue.dead_letter(conn, batch.token, keyed["new_dead"], "permanent", now=ago(29))
    queue.release(conn, batch.token, [keyed["old_live"]])
    assert len(by_id) == 5
    return keyed


def test_cleanup_removes_exactly_the_expired_rows(database_url: str, conn) -> None:
    ages = [0, 1, 89.9, 90.1, 91, 365] * 150 + [120] * 500
    audit = seed_audit_log(conn, ages)
    keyed = seed_queue_history(conn)
    settings = load_settings(cleanup_batch_size=100)

    results = retention.run_cleanup(settings, database_url, now=NOW)

    by_table = {r.table: r for r in results}
    expected_kept = {i for i, age in audit.items() if age <= 90}
    assert ids(conn, "SELECT id FROM public.audit_log") == expected_kept
    assert by_table["public.audit_log"].deleted == len(audit) - len(expected_kept) == 950
    assert by_table["public.audit_log"].batches >= 4  # adaptive sizes, but several batches
    assert ids(conn, "SELECT id FROM jobs.archive") == {keyed["new_acked"]}
    assert ids(conn, "SELECT id FROM jobs.dead_letters") == {keyed["new_dead"]}
    keys = {r["key"] for r in conn.execute("SELECT key FROM jobs.idempotency_keys")}
    assert keys == {"key:old_live"}  # a pending message keeps its key however old
    assert by_table["jobs.idempotency_keys"].deleted == 4
    assert ids(conn, "SELECT id FROM jobs.messages") == {keyed["old_live"]}

    vacuumed = {
        r["relname"]
        for r in conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL"
        )
    }
    assert {"audit_log", "archive_batches", "dead_letters", "idempotency_keys"} <= vacuumed
    assert all(r.vacuum_seconds is not None for r in results)

    again = retention.run_cleanup(settings, database_url, now=NOW)
    assert [r.deleted for r in again] == [0, 0, 0, 0]
    assert all(r.vacuum_seconds is None for r in again)  # nothing shrank: no VACUUM


def test_retention_is_configurable(database_url: str, conn) -> None:
    audit = seed_audit_log(conn, [5, 9, 11, 30])
    settings = load_settings(cleanup_audit_log_days=10)
    retention.run_cleanup(settings, database_url, now=NOW, vacuum_tables=False)
    assert ids(conn, "SELECT id FROM public.audit_log") == {
        i for i, age in audit.items() if age < 10
    }


def test_every_batch_commits_on_its_own(database_url: str, conn) -> None:
    """Another session sees the table shrink while the cleanup is still running."""
    seed_audit_log(conn, [100 + i / 86400 for i in range(1000)])  # one row a second
    seen: list[int] = []

    def observe(deleted: int, seconds: float) -> None:
        seen.append(conn.execute("SELECT count(*) AS n FROM public.audit_log").fetchone()["n"])

    with db.connect(database_url, autocommit=True) as worker:
        rule = retention.retentions(load_settings())[0]
        result = retention.purge(
            worker, rule, now=NOW, batch_size=100, target_seconds=0.0001, on_batch=observe
        )
    assert result.deleted == 1000
    assert seen[0] == 900 and seen[-1] == 0
    assert seen == sorted(seen, reverse=True) and len(seen) >= 10


def test_batches_neither_wait_for_fsync_nor_make_writers_wait(database_url: str, conn) -> None:
    """The batch session commits asynchronously (idempotent deletes), with a lock timeout
    and a statement timeout, under its own name; the caller's other sessions are untouched."""
    seed_audit_log(conn, [100, 101])
    with db.connect(database_url, autocommit=True) as worker:
        retention.purge(worker, retention.retentions(load_settings())[0], now=NOW)
        settings = worker.execute(
            "SELECT current_setting('synchronous_commit') AS sync,"
            " current_setting('lock_timeout') AS lock,"
            " current_setting('application_name') AS app"
        ).fetchone()
    assert settings == {"sync": "off", "lock": "1s", "app": retention.APPLICATION_NAME}
    assert conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"


def test_purge_refuses_a_connection_inside_a_transaction(database_url: str) -> None:
    with db.connect(database_url) as conn, pytest.raises(ValueError, match="autocommit"):
        retention.purge(conn, retention.retentions(load_settings())[0], now=NOW)


def test_windows_adapt_to_the_target_duration() -> None:
    hour = dt.timedelta(hours=1)
    assert retention._next_window(hour, 0.5, 0.25) == hour / 2  # at most halves
    assert retention._next_window(hour, 0.2, 0.25) == hour * 1.25
    assert retention._next_window(hour, 0.001, 0.25) == 2 * hour  # at most doubles
    assert retention._next_window(retention.MIN_WINDOW, 10.0, 0.25) == retention.MIN_WINDOW


def test_identical_timestamps_still_go_in_one_window(database_url: str, conn) -> None:
    """A window cannot split one instant: rows sharing a timestamp leave together."""
    seed_audit_log(conn, [100] * 300)
    with db.connect(database_url, autocommit=True) as worker:
        result = retention.purge(worker, retention.retentions(load_settings())[0], now=NOW)
    assert (result.deleted, result.batches) == (300, 1)
