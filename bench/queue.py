"""Queue throughput and latency versus a pgmq-style bare table, measured in the same run.

Ours: `jobs.send_batch`, then `jobs.claim` + `jobs.ack` per batch (lease, guarded ack,
archive). Baseline: `INSERT` into a bare table and `DELETE … RETURNING` of the oldest rows
(`FOR UPDATE SKIP LOCKED`), which is what pgmq's `pop` does. Every batch is its own
committed transaction on both sides. The last line printed is one JSON object.

    python bench/queue.py [--messages 100000] [--batch 1000] [--singles 500]
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
import tempfile
import time
from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb

from taskflow_jobs import db, queue
from taskflow_jobs.settings import EMAIL_QUEUE

BARE = """
CREATE TABLE bench_bare (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL
)"""
BARE_SEND = "INSERT INTO bench_bare (payload) SELECT unnest(%(payloads)s::jsonb[]) RETURNING id"
BARE_POP = """
DELETE FROM bench_bare WHERE id IN (
    SELECT id FROM bench_bare ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED
) RETURNING *"""


def payload(i: int) -> dict:
    return {
        "type": "welcome_email",
        "user_id": f"00000000-0000-0000-0000-{i:012d}",
        "email": f"user{i}@example.com",
        "name": f"User {i}",
    }


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    count = fn()
    return count, time.perf_counter() - start


def percentile_ms(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3)


def batches(total: int, size: int) -> list[list[dict]]:
    return [[payload(i) for i in range(s, min(total, s + size))] for s in range(0, total, size)]


def run_ours(conn: psycopg.Connection, work: list[list[dict]], batch: int) -> dict:
    def send() -> int:
        n = 0
        for chunk in work:
            n += len(queue.send_batch(conn, EMAIL_QUEUE, chunk))
            conn.commit()
        return n

    def claim_ack() -> int:
        n = 0
        while True:
            leased = queue.claim(conn, EMAIL_QUEUE, batch, 60)
            if not leased:
                conn.commit()
                return n
            n += len(queue.ack(conn, leased.token, leased.ids))
            conn.commit()

    sent, send_s = timed(send)
    done, claim_s = timed(claim_ack)
    assert sent == done, (sent, done)
    return {"send_msgs_per_s": rate(sent, send_s), "claim_ack_msgs_per_s": rate(done, claim_s)}


def run_bare(conn: psycopg.Connection, work: list[list[dict]], batch: int) -> dict:
    def send() -> int:
        n = 0
        for chunk in work:
            n += len(conn.execute(BARE_SEND, {"payloads": [Jsonb(p) for p in chunk]}).fetchall())
            conn.commit()
        return n

    def pop() -> int:
        n = 0
        while True:
            rows = conn.execute(BARE_POP, {"n": batch}).fetchall()
            conn.commit()
            if not rows:
                return n
            n += len(rows)

    sent, send_s = timed(send)
    done, pop_s = timed(pop)
    assert sent == done, (sent, done)
    return {"send_msgs_per_s": rate(sent, send_s), "claim_ack_msgs_per_s": rate(done, pop_s)}


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
        "note": "claim + ack is two committed round trips; the baseline pop is one",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="best of N, alternating sides")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        server = db.embedded_server(Path(tmp), cleanup_mode="stop")
        embedded = db.EmbeddedPostgres(Path(server.get_postmaster_info().socket_dir), server)
        db.ensure_database(embedded.url("postgres"), "bench")
        url = embedded.url("bench")
        db.migrate(url)
        with db.connect(url) as conn:
            conn.execute(BARE)
            conn.commit()
            work = batches(args.messages, args.batch)
            ours, bare = [], []
            for _ in range(args.rounds):
                ours.append(run_ours(conn, work, args.batch))
                bare.append(run_bare(conn, work, args.batch))
                conn.execute("TRUNCATE jobs.archive, bench_bare")
                conn.commit()
            single = singles(conn, args.singles)
        server.cleanup()

    def best(rows: list[dict], key: str) -> float:
        return max(r[key] for r in rows)

    result = {
        "bench": "queue",
        "messages": args.messages,
        "batch_size": args.batch,
        "rounds": args.rounds,
        "send_batch_msgs_per_s": best(ours, "send_msgs_per_s"),
        "claim_ack_msgs_per_s": best(ours, "claim_ack_msgs_per_s"),
        "baseline": {
            "what": "pgmq-style bare table: INSERT, DELETE … RETURNING (SKIP LOCKED)",
            "send_batch_msgs_per_s": best(bare, "send_msgs_per_s"),
            "pop_msgs_per_s": best(bare, "claim_ack_msgs_per_s"),
        },
        "single_message": single,
        "goal": "claim_ack >= 20000 msg/s and ratio >= 0.7",
    }
    result["ratio"] = round(
        result["claim_ack_msgs_per_s"] / result["baseline"]["pop_msgs_per_s"], 3
    )
    result["send_ratio"] = round(
        result["send_batch_msgs_per_s"] / result["baseline"]["send_batch_msgs_per_s"], 3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
