"""Queue throughput and latency versus a pgmq-style bare table, measured in the same run.

Ours: `jobs.send_batch`, then `jobs.claim` + `jobs.ack` per batch (lease, guarded ack),
once with the archive (the email queue's setting) and once without (ack = delete).
Baselines on a bare table: `INSERT`, and `DELETE … RETURNING` of the oldest rows with
`FOR UPDATE SKIP LOCKED` (pgmq's pop, at-most-once: the issue's baseline); plus pgmq's
at-least-once pair, read (`UPDATE vt … RETURNING`) then delete, for a like-for-like view.
Every batch is its own committed transaction. Variants alternate round by round and the
median of the rounds is reported. The last line printed is one JSON object.

    python bench/queue.py [--messages 100000] [--batch 1000] [--rounds 5] [--singles 500]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib `queue` module: take bench/ off the import path
# before anything imports `queue`, and put the project root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import json
import statistics
import time
from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb

from bench._scratch import migrated_database, scratch_postgres
from taskflow_jobs import db
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE

BARE = """
CREATE TABLE bench_bare (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    vt timestamptz NOT NULL DEFAULT now(),
    read_ct integer NOT NULL DEFAULT 0,
    payload jsonb NOT NULL
)"""
BARE_SEND = "INSERT INTO bench_bare (payload) SELECT unnest(%(payloads)s::jsonb[])"
BARE_POP = """
DELETE FROM bench_bare WHERE id IN (
    SELECT id FROM bench_bare ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED
) RETURNING *"""
BARE_READ = """
UPDATE bench_bare SET vt = now() + interval '60 seconds', read_ct = read_ct + 1
WHERE id IN (
    SELECT id FROM bench_bare WHERE vt <= now() ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED
) RETURNING *"""
BARE_DELETE = "DELETE FROM bench_bare WHERE id = ANY(%(ids)s)"


def payload(i: int) -> dict:
    return {
        "type": "welcome_email",
        "user_id": f"00000000-0000-0000-0000-{i:012d}",
        "email": f"user{i}@example.com",
        "name": f"User {i}",
    }


def percentile_ms(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3)


class Bench:
    def __init__(self, conn: psycopg.Connection, total: int, batch: int) -> None:
        self.conn = conn
        self.batch = batch
        self.work = [
            [payload(i) for i in range(s, min(total, s + batch))] for s in range(0, total, batch)
        ]
        self.total = total

    def _rate(self, fn: Callable[[], int]) -> float:
        start = time.perf_counter()
        done = fn()
        seconds = time.perf_counter() - start
        assert done == self.total, f"processed {done} of {self.total}"
        return self.total / seconds

    def reset(self) -> None:
        self.conn.execute("TRUNCATE jobs.archive, bench_bare")
        self.conn.commit()

    # --- ours ---------------------------------------------------------------------------
    def send_ours(self) -> float:
        def run() -> int:
            n = 0
            for chunk in self.work:
                n += len(queue.send_batch(self.conn, EMAIL_QUEUE, chunk))
                self.conn.commit()
            return n

        return self._rate(run)

    def claim_ack(self, archive: bool) -> float:
        self.conn.execute(
            "UPDATE jobs.queues SET archive = %s WHERE name = %s", (archive, EMAIL_QUEUE)
        )
        self.conn.commit()
        self.send_ours()

        def run() -> int:
            n = 0
            while True:
                leased = queue.claim(self.conn, EMAIL_QUEUE, self.batch, 60)
                self.conn.commit()
                if not leased:
                    return n
                n += len(queue.ack(self.conn, leased.token, leased.ids))
                self.conn.commit()

        return self._rate(run)

    # --- bare table -------------------------------------------------------------------
    def send_bare(self) -> float:
        def run() -> int:
            for chunk in self.work:
                self.conn.execute(BARE_SEND, {"payloads": [Jsonb(p) for p in chunk]})
                self.conn.commit()
            return self.total

        return self._rate(run)

    def pop(self) -> float:
        self.send_bare()

        def run() -> int:
            n = 0
            while rows := self.conn.execute(BARE_POP, {"n": self.batch}).fetchall():
                self.conn.commit()
                n += len(rows)
            self.conn.commit()
            return n

        return self._rate(run)

    def read_delete(self) -> float:
        self.send_bare()

        def run() -> int:
            n = 0
            while rows := self.conn.execute(BARE_READ, {"n": self.batch}).fetchall():
                self.conn.commit()
                self.conn.execute(BARE_DELETE, {"ids": [r["id"] for r in rows]})
                self.conn.commit()
                n += len(rows)
            self.conn.commit()
            return n

        return self._rate(run)


def singles(conn: psycopg.Connection, n: int) -> dict:
    """Latency of one committed send, and of one claim + ack, ours and bare."""
    ours_send, ours_cycle, bare_send, bare_pop = [], [], [], []
    for i in range(n):
        t = time.perf_counter()
        queue.send(conn, EMAIL_QUEUE, payload(i))
        conn.commit()
        ours_send.append(time.perf_counter() - t)
        t = time.perf_counter()
        leased = queue.claim(conn, EMAIL_QUEUE, 1, 60)
        conn.commit()
        queue.ack(conn, leased.token, leased.ids)
        conn.commit()
        ours_cycle.append(time.perf_counter() - t)
        t = time.perf_counter()
        conn.execute(BARE_SEND, {"payloads": [Jsonb(payload(i))]})
        conn.commit()
        bare_send.append(time.perf_counter() - t)
        t = time.perf_counter()
        conn.execute(BARE_POP, {"n": 1}).fetchall()
        conn.commit()
        bare_pop.append(time.perf_counter() - t)
    return {
        "send_p50_ms": percentile_ms(ours_send, 0.5),
        "send_p99_ms": percentile_ms(ours_send, 0.99),
        "claim_ack_p50_ms": percentile_ms(ours_cycle, 0.5),
        "claim_ack_p99_ms": percentile_ms(ours_cycle, 0.99),
        "baseline_send_p50_ms": percentile_ms(bare_send, 0.5),
        "baseline_pop_p50_ms": percentile_ms(bare_pop, 0.5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--singles", type=int, default=500)
    args = parser.parse_args()

    variants = ("send", "claim_ack_archive", "claim_ack_delete", "bare_send", "pop", "read_delete")
    results: dict[str, list[float]] = {name: [] for name in variants}
    with scratch_postgres("bench-queue-") as (embedded, _root):
        url = migrated_database(embedded, "bench")
        with db.connect(url) as conn:
            conn.execute(BARE)
            conn.commit()
            bench = Bench(conn, args.messages, args.batch)
            for _ in range(args.rounds):
                results["send"].append(bench.send_ours())
                conn.execute("TRUNCATE jobs.messages")
                conn.commit()
                results["claim_ack_archive"].append(bench.claim_ack(archive=True))
                results["claim_ack_delete"].append(bench.claim_ack(archive=False))
                results["bare_send"].append(bench.send_bare())
                bench.reset()
                results["pop"].append(bench.pop())
                results["read_delete"].append(bench.read_delete())
                bench.reset()
            conn.execute("UPDATE jobs.queues SET archive = true")
            conn.commit()
            single = singles(conn, args.singles)

    median = {name: round(statistics.median(values)) for name, values in results.items()}
    result = {
        "bench": "queue",
        "messages": args.messages,
        "batch_size": args.batch,
        "rounds": args.rounds,
        "send_batch_msgs_per_s": median["send"],
        "claim_ack_msgs_per_s": median["claim_ack_archive"],
        "claim_ack_no_archive_msgs_per_s": median["claim_ack_delete"],
        "baseline": {
            "what": "bare table: INSERT; DELETE ... RETURNING with SKIP LOCKED (pgmq pop)",
            "send_batch_msgs_per_s": median["bare_send"],
            "pop_msgs_per_s": median["pop"],
            "read_then_delete_msgs_per_s": median["read_delete"],
        },
        "single_message": single,
        "goal": "claim_ack >= 20000 msg/s; ratio >= 0.7",
    }
    result["ratio"] = round(median["claim_ack_archive"] / median["pop"], 3)
    result["ratio_no_archive"] = round(median["claim_ack_delete"] / median["pop"], 3)
    result["ratio_vs_read_delete"] = round(median["claim_ack_delete"] / median["read_delete"], 3)
    result["send_ratio"] = round(median["send"] / median["bare_send"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
