"""A signup's welcome email with 100,000 bulk emails waiting, versus an empty queue.

Real parts: an embedded PostgreSQL and a Prefect server (as `make run` starts them), the
SendGrid stand-in in its own process, and BENCH_CONSUMERS real `taskflow-jobs consume`
processes. Signups are INSERTed into auth.users (the trigger enqueues the welcome email)
at a steady BENCH_SIGNUP_RATE per second, one committed transaction each, for
BENCH_SECONDS; latency = the stand-in's receipt time - the time the INSERT's commit
returned.

1. Baseline, same run: the trickle with an empty queue.
2. The figure: BULK bulk notifications (`"priority": "bulk"`) enqueued at once; once the
   consumers are draining them, the same trickle while they drain. The bulk still waiting
   when the trickle ends is reported (it must not be 0: the signups competed with bulk
   the whole time), and so is the bulk drain rate during the trickle.
3. Unless BENCH_WITHOUT_EXPRESS=0: the same as 2 with EMAIL_EXPRESS_BATCH=0 (no express
   lane: a welcome is claimed first by the next batch, and waits for the batches in flight).

The last line printed is one JSON object: `ratio` = p99 with bulk / p99 empty (goal <= 2).

    python bench/lanes.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from psycopg.types.json import Jsonb

BULK = int(os.environ.get("BENCH_BULK", "100000"))
SIGNUP_RATE = float(os.environ.get("BENCH_SIGNUP_RATE", "20"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
CONSUMERS = int(os.environ.get("BENCH_CONSUMERS", "1"))
WITHOUT_EXPRESS = os.environ.get("BENCH_WITHOUT_EXPRESS", "1") != "0"
# the trickle starts once the consumers have sent this many bulk emails (drain under way)
BULK_STARTED = 2000


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000, 1)


class Run:
    def __init__(self, url: str, stub_url: str, env: dict[str, str], log_dir: Path) -> None:
        self.url = url
        self.stub_url = stub_url
        self.env = env
        self.log_dir = log_dir
        self.conn = psycopg.connect(url, autocommit=True)
        self.consumers: list[subprocess.Popen] = []
        self.signups = 0

    # --- processes ----------------------------------------------------------------------
    def start_consumers(self, **extra: str) -> None:
        cli = str(Path(sys.executable).parent / "taskflow-jobs")
        for i in range(CONSUMERS):
            log = open(self.log_dir / f"consume-{len(self.consumers)}-{i}.log", "wb")  # noqa: SIM115
            self.consumers.append(
                subprocess.Popen(
                    [cli, "consume"],
                    env={**os.environ, **self.env, **extra},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 90
        while self._listening() < CONSUMERS:
            assert all(p.poll() is None for p in self.consumers), "a consumer exited"
            assert time.monotonic() < deadline, "the consumers did not start listening"
            time.sleep(0.2)
        # warm up: the first burst of a process pays for imports and client setup
        self.trickle(5, 5.0)

    def stop_consumers(self) -> None:
        for p in self.consumers:
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.consumers:
            p.wait(90)
        self.consumers = []

    def _listening(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%'"
        ).fetchone()
        return int(row[0]) if row else 0

    # --- the stand-in ---------------------------------------------------------------------
    def received(self) -> list[dict[str, Any]]:
        from bench._stub import received

        return received(self.stub_url)

    def clear(self) -> None:
        from bench._stub import clear

        clear(self.stub_url)

    # --- load -----------------------------------------------------------------------------
    def trickle(self, count: int, rate: float) -> dict[str, float]:
        """`count` signups at `rate` per second; address -> when its commit returned."""
        committed: dict[str, float] = {}
        start = time.monotonic()
        for i in range(count):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            self.signups += 1
            address = f"signup{self.signups}@example.com"
            self.conn.execute(
                "INSERT INTO auth.users (id, email, raw_user_meta_data)"
                " VALUES (gen_random_uuid(), %s, jsonb_build_object('full_name', %s::text))",
                (address, f"Signup {self.signups}"),
            )
            committed[address] = time.time()
        deadline = time.monotonic() + 120
        while self._welcomes_waiting() and time.monotonic() < deadline:
            time.sleep(0.2)
        return committed

    def _welcomes_waiting(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM jobs.messages WHERE priority = 0").fetchone()
        return int(row[0]) if row else 0

    def bulk_waiting(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM jobs.messages WHERE priority = 1").fetchone()
        return int(row[0]) if row else 0

    def enqueue_bulk(self, n: int) -> None:
        from taskflow_jobs.jobs import queue
        from taskflow_jobs.settings import EMAIL_QUEUE

        notes = [
            {"type": "notification", "to": f"list{i}@example.com", "subject": "News", "body": "Hi"}
            for i in range(n)
        ]
        with self.conn.transaction():
            self.conn.execute(
                "SELECT count(*) FROM jobs.send_batch(%s, %s::jsonb, NULL, %s::smallint)",
                (EMAIL_QUEUE, Jsonb(notes), queue.lane(queue.BULK)),
            )

    def bulk_sent(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM jobs.archive WHERE payload ->> 'to' LIKE 'list%%'"
        ).fetchone()
        return int(row[0]) if row else 0

    # --- phases ---------------------------------------------------------------------------
    def phase(self, name: str, bulk: int) -> dict[str, Any]:
        self.clear()
        sent_before = self.bulk_sent()
        if bulk:
            self.enqueue_bulk(bulk)
            deadline = time.monotonic() + 120
            while self.bulk_sent() - sent_before < BULK_STARTED:
                assert time.monotonic() < deadline, "the bulk send did not start"
                time.sleep(0.2)
        waiting_at_start = self.bulk_waiting()
        load = os.getloadavg()[0]
        started = time.time()
        committed = self.trickle(int(SIGNUP_RATE * SECONDS), SIGNUP_RATE)
        ended = time.time()
        waiting_at_end = self.bulk_waiting()
        rows = self.received()
        first: dict[str, float] = {}
        for row in rows:
            first.setdefault(row["to"], row["at"])
        latencies = [first[a] - t for a, t in committed.items() if a in first]
        assert len(latencies) == len(committed), f"{name}: not every welcome arrived"
        bulk_during = sum(
            1 for r in rows if r["to"].startswith("list") and started <= r["at"] <= ended
        )
        figures = {
            "signups": len(committed),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": ms(latencies, 0.99),
            "max_ms": ms(latencies, 1.0),
            "load_avg_1m": round(load, 2),
        }
        if bulk:
            figures |= {
                "bulk_enqueued": bulk,
                "bulk_waiting_at_start": waiting_at_start,
                "bulk_waiting_at_end": waiting_at_end,
                "bulk_drain_per_s": round(bulk_during / (ended - started), 1),
            }
            assert waiting_at_end > 0, f"{name}: the bulk was drained before the trickle ended"
        print(f"{name}: {figures}", file=sys.stderr, flush=True)
        return figures

    def drop_bulk(self) -> None:
        self.conn.execute("DELETE FROM jobs.messages WHERE priority = 1")


def main() -> None:
    from bench._stub import API_KEY, start_stub
    from taskflow_jobs import net
    from taskflow_jobs.devstack import processes, up
    from taskflow_jobs.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="bench-lanes-"))
    supervisor = processes.Supervisor(work / "logs")
    stub = None
    run = None
    load_before = os.getloadavg()
    try:
        settings = load_settings(data_dir=work / "data", database_url=None)
        stack = up.start_stack(settings, supervisor, prefect_port=net.free_port())
        stub_port = net.free_port()
        stub = start_stub(stub_port, supervisor.log_dir)
        env = {
            **stack.child_env(),
            "TASKFLOW_DATA_DIR": str(work / "data"),
            "EMAIL_PROVIDER": "sendgrid",
            "SENDGRID_API_URL": f"http://127.0.0.1:{stub_port}",
            "SENDGRID_API_KEY": API_KEY,
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        run = Run(stack.database_url, f"http://127.0.0.1:{stub_port}", env, supervisor.log_dir)
        run.start_consumers()
        empty = run.phase("empty queue", 0)
        with_bulk = run.phase("100k bulk waiting", BULK)
        run.stop_consumers()
        without = None
        if WITHOUT_EXPRESS:
            run.drop_bulk()
            run.start_consumers(EMAIL_EXPRESS_BATCH="0")
            without = run.phase("100k bulk waiting, no express lane", BULK)
            run.stop_consumers()
    finally:
        if run is not None:
            if run.consumers:
                run.stop_consumers()
            run.conn.close()
        if stub is not None:
            os.killpg(stub.pid, signal.SIGTERM)
            stub.wait(10)
        supervisor.stop()
        shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "bench": "lanes",
        "consumers": CONSUMERS,
        "signup_rate_per_s": SIGNUP_RATE,
        "trickle_s": SECONDS,
        "with_bulk": with_bulk,
        "baseline": {"what": "the same trickle with an empty queue, same run", **empty},
        "goal": "ratio <= 2 (p99 with 100,000 bulk waiting / p99 with an empty queue)",
        "ratio": round(with_bulk["p99_ms"] / empty["p99_ms"], 2),
        "p50_ratio": round(with_bulk["p50_ms"] / empty["p50_ms"], 2),
        "bulk_drain_per_s": with_bulk["bulk_drain_per_s"],
        "load_avg_before": [round(x, 2) for x in load_before],
        "machine": f"{os.cpu_count()} shared cores: indicative",
    }
    if without is not None:
        result["without_express_lane"] = without
        result["without_express_ratio"] = round(without["p99_ms"] / empty["p99_ms"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
