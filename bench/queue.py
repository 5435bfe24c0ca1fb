"""Queue throughput and latency versus real pgmq, in the same database and run.

Ours: `jobs.send_batch`, then `jobs.claim` + `jobs.ack` per batch (lease, guarded ack,
archive), with the priority lanes and the pause check in place: half of every round is
bulk, and a pause of another type (`digest`) stands, so the claim's pause filter runs.
Baseline: pgmq's own SQL (from the `pgmq` wheel, `pgmq/sql/pgmq.sql`) installed in the
same database: `pgmq.send_batch`, then `pgmq.read` + `pgmq.archive` (at-least-once, the
same work as ours). Every batch is its own committed transaction, on one connection.
Variants alternate round by round and the median of the rounds is reported. The last line
printed is one JSON object: `ratio` = claim+ack / read+archive, `send_ratio` = ours /
pgmq send_batch, each the median of the rounds' ratios (ours and pgmq's in one round ran
under the same load).

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
import importlib.util
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

PGMQ_QUEUE = "bench"
PGMQ_SEND = "SELECT * FROM pgmq.send_batch(%(queue)s, %(payloads)s::jsonb[])"
PGMQ_READ = "SELECT * FROM pgmq.read(%(queue)s, 60, %(n)s)"
PGMQ_ARCHIVE = "SELECT * FROM pgmq.archive(%(queue)s, %(ids)s::bigint[])"
PGMQ_SEND_ONE = "SELECT * FROM pgmq.send(%(queue)s, %(payload)s)"


def install_pgmq(conn: psycopg.Connection) -> str:
    """pgmq's own SQL (the `pgmq` wheel ships it) in the same database; its version."""
    sql_dir = Path(importlib.util.find_spec("pgmq").origin).parent / "sql"  # type: ignore[union-attr, arg-type]
    conn.execute((sql_dir / "pgmq.sql").read_text())
    conn.execute("SELECT pgmq.create(%s)", (PGMQ_QUEUE,))
    conn.commit()
    return (sql_dir / "VERSION").read_text().strip()


def payload(i: int) -> dict:
    return {
        "type": "welcome_email",
        "user_id": f"00000000-0000-0000-0000-{i:012d}",
        "email": f"user{i}@example.com",
        "name": f"User {i}",
    }


def paired(ours: list[float], theirs: list[float]) -> float:
    """The median of the rounds' ratios (a shared machine's load drifts between rounds)."""
    return round(statistics.median(a / b for a, b in zip(ours, theirs, strict=True)), 3)


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
        self.conn.execute(f"TRUNCATE jobs.archive_batches, pgmq.a_{PGMQ_QUEUE}")
        self.conn.commit()

    # --- ours ---------------------------------------------------------------------------
    def send_ours(self) -> float:
        def run() -> int:
            n = 0
            for number, chunk in enumerate(self.work):
                lane = queue.BULK if number % 2 else queue.TRANSACTIONAL
                n += len(queue.send_batch(self.conn, EMAIL_QUEUE, chunk, priority=lane))
                self.conn.commit()
            return n

        return self._rate(run)

    def claim_ack(self) -> float:
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

    # --- pgmq ---------------------------------------------------------------------------
    def send_pgmq(self) -> float:
        def run() -> int:
            n = 0
            for chunk in self.work:
                params = {"queue": PGMQ_QUEUE, "payloads": [Jsonb(p) for p in chunk]}
                n += len(self.conn.execute(PGMQ_SEND, params).fetchall())
                self.conn.commit()
            return n

        return self._rate(run)

    def read_archive(self) -> float:
        def run() -> int:
            n = 0
            while rows := self.conn.execute(
                PGMQ_READ, {"queue": PGMQ_QUEUE, "n": self.batch}
            ).fetchall():
                self.conn.commit()
                ids = [r["msg_id"] for r in rows]
                n += len(
                    self.conn.execute(PGMQ_ARCHIVE, {"queue": PGMQ_QUEUE, "ids": ids}).fetchall()
                )
                self.conn.commit()
            self.conn.commit()
            return n

        return self._rate(run)


def singles(conn: psycopg.Connection, n: int) -> dict:
    """Latency of one committed send, and of one claim + ack, ours and pgmq's."""
    ours_send, ours_cycle, pgmq_send, pgmq_cycle = [], [], [], []
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
        conn.execute(PGMQ_SEND_ONE, {"queue": PGMQ_QUEUE, "payload": Jsonb(payload(i))})
        conn.commit()
        pgmq_send.append(time.perf_counter() - t)
        t = time.perf_counter()
        rows = conn.execute(PGMQ_READ, {"queue": PGMQ_QUEUE, "n": 1}).fetchall()
        conn.commit()
        conn.execute(PGMQ_ARCHIVE, {"queue": PGMQ_QUEUE, "ids": [r["msg_id"] for r in rows]})
        conn.commit()
        pgmq_cycle.append(time.perf_counter() - t)
    return {
        "send_p50_ms": percentile_ms(ours_send, 0.5),
        "send_p99_ms": percentile_ms(ours_send, 0.99),
        "claim_ack_p50_ms": percentile_ms(ours_cycle, 0.5),
        "claim_ack_p99_ms": percentile_ms(ours_cycle, 0.99),
        "pgmq_send_p50_ms": percentile_ms(pgmq_send, 0.5),
        "pgmq_read_archive_p50_ms": percentile_ms(pgmq_cycle, 0.5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--singles", type=int, default=500)
    args = parser.parse_args()

    variants = ("send", "claim_ack", "pgmq_send", "pgmq_read_archive")
    results: dict[str, list[float]] = {name: [] for name in variants}
    with scratch_postgres("bench-queue-") as (embedded, _root):
        url = migrated_database(embedded, "bench")
        with db.connect(url) as conn:
            version = install_pgmq(conn)
            # a standing pause of a type the bench never sends: the claim's filter runs
            conn.execute("SELECT jobs.pause(%s, 'digest', 'cli')", (EMAIL_QUEUE,))
            conn.commit()
            bench = Bench(conn, args.messages, args.batch)
            for number in range(args.rounds):
                pairs = [("send", bench.send_ours), ("pgmq_send", bench.send_pgmq)]
                pairs += [("claim_ack", bench.claim_ack), ("pgmq_read_archive", bench.read_archive)]
                if number % 2:  # who goes first alternates too
                    pairs = [pairs[1], pairs[0], pairs[3], pairs[2]]
                for name, fn in pairs:
                    results[name].append(fn())
                bench.reset()
                conn.autocommit = True
                conn.execute("VACUUM ANALYZE jobs.messages")
                conn.execute(f"VACUUM ANALYZE pgmq.q_{PGMQ_QUEUE}")
                conn.autocommit = False
                print(
                    f"round {number + 1}: { ({k: round(v[-1]) for k, v in results.items()}) }",
                    file=sys.stderr,
                    flush=True,
                )
            single = singles(conn, args.singles)

    median = {name: round(statistics.median(values)) for name, values in results.items()}
    result = {
        "bench": "queue",
        "messages": args.messages,
        "batch_size": args.batch,
        "rounds": args.rounds,
        "send_batch_msgs_per_s": median["send"],
        "claim_ack_msgs_per_s": median["claim_ack"],
        "baseline": {
            "what": f"pgmq {version} (its own SQL), same database: send_batch; read + archive",
            "send_batch_msgs_per_s": median["pgmq_send"],
            "read_archive_msgs_per_s": median["pgmq_read_archive"],
        },
        "single_message": single,
        "with": "half the messages bulk; a standing pause of another type",
        "goal": "send_ratio >= 1.0; ratio >= 1.5",
        # each round pairs ours with pgmq under the same load: the median of those ratios
        "round_send_ratios": [
            round(a / b, 3) for a, b in zip(results["send"], results["pgmq_send"], strict=True)
        ],
        "round_ratios": [
            round(a / b, 3)
            for a, b in zip(results["claim_ack"], results["pgmq_read_archive"], strict=True)
        ],
        "send_ratio": paired(results["send"], results["pgmq_send"]),
        "ratio": paired(results["claim_ack"], results["pgmq_read_archive"]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
