"""Benchmark: cleanup of 2 million expired audit_log rows among live ones, with a writer.

Ours: `retention.purge`, batches of adaptive size, each its own short transaction.
Baseline: one `DELETE FROM audit_log WHERE created_at < now() - 90 days` transaction.
Both run on identical copies of the data (CREATE DATABASE … TEMPLATE) while a writer
thread inserts audit rows one by one. Reported for both: the longest transaction (timed by
the client, and sampled independently from pg_stat_activity), total delete time, and the
writer's p99 insert latency during the delete. VACUUM (ANALYZE) is timed separately.
Goals: longest transaction <= 1 s; total <= 2x the single DELETE ("ratio").

Runs on its own embedded PostgreSQL under /tmp (deleted afterwards). Last line: JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import threading
import time
from pathlib import Path

# bench/ holds queue.py, which would shadow the stdlib `queue` module: take bench/ off the
# import path and put the project root there instead (for `bench._scratch`).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._scratch import migrated_database, scratch_postgres  # noqa: E402
from taskflow_jobs import db
from taskflow_jobs.jobs import retention
from taskflow_jobs.settings import load_settings  # noqa: E402

APP = retention.APPLICATION_NAME
SEED = """
INSERT INTO public.audit_log (actor_id, action, entity, entity_id, created_at)
SELECT gen_random_uuid(), 'update', 'task', i::text,
       CASE WHEN i <= %(expired)s
            THEN now() - interval '400 days' + interval '309 days' * i / %(expired)s
            ELSE now() - interval '89 days' + interval '89 days' * (i - %(expired)s) / %(live)s
       END
FROM generate_series(1, %(expired)s + %(live)s) AS i
"""
SINGLE_DELETE = "DELETE FROM public.audit_log WHERE created_at < %(cutoff)s"
WRITE = "INSERT INTO public.audit_log (action, entity, created_at) VALUES ('write', 'bench', now())"
EXPIRED_LEFT = (
    "SELECT count(*) AS n FROM public.audit_log WHERE created_at < now() - interval '90 days'"
)
LONGEST_XACT = """
SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0) AS s
FROM pg_stat_activity WHERE application_name = %(app)s AND xact_start IS NOT NULL
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Background(threading.Thread):
    """Runs `step(conn)` in a loop on its own connection until stopped."""

    def __init__(self, url: str, step, pause: float) -> None:
        super().__init__(daemon=True)
        self.url, self.step, self.pause = url, step, pause
        self.samples: list[tuple[float, float]] = []  # (when, value)
        self.halt = threading.Event()

    def run(self) -> None:
        with db.connect(self.url, autocommit=True) as conn:
            while not self.halt.is_set():
                self.samples.append((time.perf_counter(), self.step(conn)))
                time.sleep(self.pause)

    def between(self, start: float, end: float) -> list[float]:
        return [v for t, v in self.samples if start <= t <= end]

    def stop(self) -> None:
        self.halt.set()
        self.join()


def write_one(conn) -> float:
    started = time.perf_counter()
    conn.execute(WRITE)
    return (time.perf_counter() - started) * 1000


def longest_open_transaction(conn) -> float:
    return float(conn.execute(LONGEST_XACT, {"app": APP}).fetchone()["s"])


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else float("nan")


def measure(url: str, delete) -> dict[str, float]:
    """Run `delete(conn) -> (rows, longest client-timed transaction s)` under a writer.

    Each run starts right after a CHECKPOINT, so neither inherits the other's (or the
    seeding's) pending checkpoint: its fsyncs would land on whichever run came second."""
    with db.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        writer = Background(url, write_one, 0.002)
        monitor = Background(url, longest_open_transaction, 0.02)
        writer.start()
        monitor.start()
        time.sleep(2.0)  # the writer's latency before the cleanup, for reference
        conn.execute("SELECT set_config('application_name', %s, false)", (APP,))
        started = time.perf_counter()
        deleted, longest = delete(conn)
        ended = time.perf_counter()
        time.sleep(1.0)
        writer.stop()
        monitor.stop()
        vacuum_started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) public.audit_log")
        vacuum_s = time.perf_counter() - vacuum_started
        left = conn.execute(EXPIRED_LEFT).fetchone()["n"]
    during = writer.between(started, ended)
    before = writer.between(0, started)
    return {
        "deleted": deleted,
        "expired_left": left,
        "total_s": round(ended - started, 2),
        "longest_transaction_s": round(longest, 3),
        "longest_transaction_sampled_s": round(max(monitor.between(started, ended), default=0), 3),
        "writer_inserts": len(during),
        "writer_p99_ms": round(p99(during), 2),
        "writer_p99_before_ms": round(p99(before), 2),
        "vacuum_s": round(vacuum_s, 2),
    }


def single_delete(conn, cutoff: dt.datetime) -> tuple[int, float]:
    started = time.perf_counter()
    with conn.transaction():
        deleted = conn.execute(SINGLE_DELETE, {"cutoff": cutoff}).rowcount
    return deleted, time.perf_counter() - started


def batched_delete(conn, now: dt.datetime) -> tuple[int, float]:
    settings = load_settings()
    rule = retention.retentions(settings)[0]
    result = retention.purge(
        conn,
        rule,
        now=now,
        batch_size=settings.cleanup_batch_size,
        target_seconds=settings.cleanup_batch_seconds,
    )
    log(f"  batched: {result.batches} batches, {result.timeouts} cancelled")
    return result.deleted, result.longest_batch_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expired", type=int, default=2_000_000)
    parser.add_argument("--live", type=int, default=1_000_000)
    args = parser.parse_args()

    with scratch_postgres("bench-cleanup-") as (embedded, root):
        admin = embedded.url("postgres")
        seed = migrated_database(embedded, "seed")
        log(f"seeding {args.expired:,} expired + {args.live:,} live audit rows in {root} …")
        with db.connect(seed, autocommit=True) as conn:
            conn.execute(SEED, {"expired": args.expired, "live": args.live})
            conn.execute("VACUUM (ANALYZE) public.audit_log")
        with db.connect(admin, autocommit=True) as conn:
            for name in ("run_single", "run_batched"):
                conn.execute(f"CREATE DATABASE {name} TEMPLATE seed")

        now = dt.datetime.now(dt.UTC)
        cutoff = now - dt.timedelta(days=90)
        log("single DELETE …")
        single = measure(
            admin.replace("/postgres?", "/run_single?"), lambda conn: single_delete(conn, cutoff)
        )
        log(f"  {single}")
        log("batched cleanup …")
        batched = measure(
            admin.replace("/postgres?", "/run_batched?"), lambda conn: batched_delete(conn, now)
        )
        log(f"  {batched}")

        ok = single["deleted"] == batched["deleted"] == args.expired
        ok = ok and single["expired_left"] == batched["expired_left"] == 0
        result = {
            "bench": "cleanup",
            "expired_rows": args.expired,
            "live_rows": args.live,
            "batched": batched,
            "baseline": "one DELETE … WHERE created_at < now() - 90 days",
            "single_delete": single,
            "longest_transaction_s": batched["longest_transaction_s"],
            "total_s": batched["total_s"],
            "baseline_total_s": single["total_s"],
            "ratio": round(batched["total_s"] / single["total_s"], 2),
            "goals": "longest_transaction_s <= 1; ratio (total / single DELETE) <= 2",
            "deleted_exactly_the_expired_rows": ok,
            "machine": "2 shared cores: figures are indicative",
        }
        print(json.dumps(result))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
