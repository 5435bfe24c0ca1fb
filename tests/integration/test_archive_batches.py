"""The archive keeps a row per ack call (0110): the rows that were there before move over,
`jobs.archive` reads as before, and a lookup by id uses the id-range index."""

from __future__ import annotations

import datetime as dt
import re

import psycopg
from psycopg.types.json import Jsonb

from taskflow_jobs import db
from taskflow_jobs.jobs import queue, retention
from taskflow_jobs.settings import EMAIL_QUEUE, load_settings

BEFORE = 110
COLUMNS = (
    "id, queue, payload, enqueued_at, finalized_at, attempt, errors, idempotency_key,"
    " redrive_count, skipped_reason"
)
T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def rows(conn: psycopg.Connection, where: str = "true") -> list[dict]:
    return conn.execute(f"SELECT {COLUMNS} FROM jobs.archive WHERE {where} ORDER BY id").fetchall()


def test_the_migration_moves_every_archived_row_over(empty_database_url: str) -> None:
    everything = db.discover_migrations()
    db.migrate(empty_database_url, [m for m in everything if m.version < BEFORE])
    with db.connect(empty_database_url, autocommit=True) as conn:
        for i in range(1, 8):  # three ack calls (three finalization times), one skip
            conn.execute(
                f"INSERT INTO jobs.archive ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s)",
                (
                    i,
                    EMAIL_QUEUE,
                    Jsonb({"type": "notification", "n": i}),
                    T0,
                    T0 + dt.timedelta(minutes=i % 3),
                    1 + i % 2,
                    Jsonb([] if i != 4 else [{"at": T0.isoformat(), "error": "boom"}]),
                    f"key-{i}" if i == 2 else None,
                    int(i == 5),
                    "opted_out: notification" if i == 6 else None,
                ),
            )
        before = rows(conn)
        assert len(before) == 7
        assert BEFORE in [m.version for m in db.migrate(empty_database_url)]
        assert rows(conn) == before
        batches = conn.execute(
            "SELECT cardinality(ids) AS n FROM jobs.archive_batches ORDER BY finalized_at"
        ).fetchall()
        assert [b["n"] for b in batches] == [2, 3, 2]  # one per finalization time
        assert conn.execute("SELECT * FROM jobs.archived(6)").fetchall() == rows(conn, "id = 6")


def test_an_ack_is_one_batch_read_back_message_by_message(conn: psycopg.Connection) -> None:
    sent = queue.send_batch(conn, EMAIL_QUEUE, [{"type": "notification", "n": n} for n in range(5)])
    leased = queue.claim(conn, EMAIL_QUEUE, 10, 60)
    assert sorted(queue.ack(conn, leased.token, leased.ids)) == sorted(sent)
    batch = conn.execute("SELECT ids, id_range, skipped_reasons FROM jobs.archive_batches")
    (only,) = batch.fetchall()
    assert sorted(only["ids"]) == sorted(sent) and only["skipped_reasons"] is None
    assert only["id_range"].lower == min(sent) and only["id_range"].upper == max(sent) + 1
    archived = rows(conn)
    assert [r["id"] for r in archived] == sorted(sent)
    assert [r["payload"]["n"] for r in archived] == list(range(5))
    assert {r["attempt"] for r in archived} == {1} and {r["skipped_reason"] for r in archived} == {
        None
    }
    # the job lookups (message_state, the receiver's webhook_job) find one message by id
    for message_id in sent:
        (found,) = conn.execute("SELECT id, payload FROM jobs.archived(%s)", (message_id,))
        assert found["id"] == message_id
    assert conn.execute("SELECT * FROM jobs.archived(%s)", (max(sent) + 1,)).fetchall() == []


def test_a_lookup_by_id_reads_one_batch_through_the_index(conn: psycopg.Connection) -> None:
    for _ in range(200):  # 200 batches of 5: a lookup must not unnest all of them
        queue.send_batch(conn, EMAIL_QUEUE, [{"type": "notification"}] * 5)
        leased = queue.claim(conn, EMAIL_QUEUE, 5, 60)
        queue.ack(conn, leased.token, leased.ids)
    conn.execute("ANALYZE jobs.archive_batches")
    target = conn.execute("SELECT min(id) + 500 AS id FROM jobs.archive").fetchone()["id"]
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")  # a tiny table: show the index path
        plan = "\n".join(
            r["QUERY PLAN"]
            for r in conn.execute(
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT b.ids FROM jobs.archive_batches b"
                " WHERE b.id_range @> %s::bigint",
                (target,),
            )
        )
    assert "archive_batches_id_range_idx" in plan, plan
    assert re.search(r"actual time=\S+ rows=1(\.00)? loops=1", plan), plan  # one batch
    (found,) = conn.execute("SELECT id FROM jobs.archived(%s)", (target,))
    assert found["id"] == target


def test_a_queue_without_archive_keeps_no_batch(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO jobs.queues (name, archive) VALUES ('scratch', false)")
    queue.send(conn, "scratch", {"type": "notification"})
    leased = queue.claim(conn, "scratch", 10, 60)
    assert len(queue.ack(conn, leased.token, leased.ids)) == 1
    assert conn.execute("SELECT count(*) AS n FROM jobs.archive_batches").fetchone()["n"] == 0


def test_the_view_takes_an_operators_update_and_delete(conn: psycopg.Connection) -> None:
    sent = queue.send_batch(conn, EMAIL_QUEUE, [{"type": "notification", "n": n} for n in range(3)])
    leased = queue.claim(conn, EMAIL_QUEUE, 10, 60)
    queue.ack(conn, leased.token, leased.ids)
    first, second, third = sorted(sent)
    long_ago = T0 - dt.timedelta(days=90)
    conn.execute("UPDATE jobs.archive SET finalized_at = %s WHERE id = %s", (long_ago, first))
    conn.execute("DELETE FROM jobs.archive WHERE id = %s", (second,))
    archived = rows(conn)
    assert [r["id"] for r in archived] == [first, third]
    assert archived[0]["finalized_at"] == long_ago and archived[0]["payload"]["n"] == 0
    assert archived[1]["finalized_at"] != long_ago and archived[1]["payload"]["n"] == 2
    sizes = conn.execute("SELECT cardinality(ids) AS n FROM jobs.archive_batches ORDER BY 1")
    assert [r["n"] for r in sizes] == [1, 1]  # the moved one is a batch of its own
    conn.execute("DELETE FROM jobs.archive")
    assert conn.execute("SELECT count(*) AS n FROM jobs.archive_batches").fetchone()["n"] == 0


def test_the_cleanups_first_window_counts_messages_not_batches(conn: psycopg.Connection) -> None:
    for minutes in (1, 2, 3):  # three ack calls of 10 messages each, a minute apart
        queue.send_batch(conn, EMAIL_QUEUE, [{"type": "notification"}] * 10)
        leased = queue.claim(conn, EMAIL_QUEUE, 10, 60)
        queue.ack(conn, leased.token, leased.ids, now=T0 + dt.timedelta(minutes=minutes))
    (archive,) = [r for r in retention.retentions(load_settings()) if r.label == "jobs.archive"]
    nth = archive.template(archive.nth_query)
    window = {"after": T0, "cutoff": T0 + dt.timedelta(days=1)}
    ends = [conn.execute(nth, {**window, "rows": n}).fetchone()["at"] for n in (5, 15, 25)]
    assert ends == [T0 + dt.timedelta(minutes=m) for m in (1, 2, 3)]
    assert conn.execute(nth, {**window, "rows": 30}).fetchone() is None
    result = retention.purge(conn, archive, now=T0 + dt.timedelta(days=400), batch_size=15)
    assert result.table == "jobs.archive" and result.deleted == 30
    assert conn.execute("SELECT count(*) AS n FROM jobs.archive_batches").fetchone()["n"] == 0
