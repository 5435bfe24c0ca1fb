"""Benchmark of email dispatch. Prints one JSON object as its last line.

1. Throughput: 10,000 signups queued at once, sent by one `email-dispatch` flow run
   (drain mode) to a SendGrid-compatible stub running in its own process. Baseline, in
   the same run: the same request bodies (as the stub received them) posted to the same
   stub by the same httpx client configuration, encoding and concurrency, with no queue,
   no database and no Prefect. Goal: ratio >= 0.9. Also `transport_ratio`: against the
   same bodies posted the provider's own way (its transport and prebuilt request parts),
   which is what is left of the dispatcher's own overhead.
2. Latency: `taskflow-jobs consume` running; signups INSERTed at a steady 100/s, one
   transaction each; latency = stub receipt time - time just before the INSERT (which
   commits) was issued. Goal: p50 <= 100 ms, p99 <= 1 s.
3. Prefect task runs per 10,000 emails in both phases (goal: a few hundred at most).
4. Consent: task_assigned and notification emails to users who have preference rows,
   with 10,000 other addresses on the suppression list, dispatched by the library loop
   (no Prefect, so the check's cost is not diluted) with the consent step (one query per
   batch, List-Unsubscribe tokens) vs the same dispatcher without it, same messages, same
   stub, alternating rounds (median of the rounds' ratios). Goal: consent_ratio >= 0.95.
   Also the dispatcher process's CPU time per email in both (consent_cpu_ratio), which
   a busy shared machine disturbs less than wall-clock throughput.

Starts its own embedded PostgreSQL and Prefect server (like `make run`) in a temporary
directory, on free ports. The machine is shared: figures are indicative.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ holds queue.py, which would shadow the stdlib `queue` module: take bench/ off the
# import path and put the project root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench._dispatch_consent import consent
from bench._stub import (
    API_KEY,
    baseline,
    clear,
    percentile,
    received,
    start_stub,
    transport_baseline,
)

THROUGHPUT_EMAILS = int(os.environ.get("BENCH_EMAILS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LATENCY_RATE = 100  # signups per second
LATENCY_SECONDS = int(os.environ.get("BENCH_LATENCY_SECONDS", "30"))
PARTS = set(os.environ.get("BENCH_PARTS", "throughput,latency,consent").split(","))


async def count_task_runs(flow_run_ids: list[Any]) -> int:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    total, offset = 0, 0
    async with get_client() as client:
        while True:
            page = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)),
                limit=200,
                offset=offset,
            )
            total += len(page)
            offset += len(page)
            if len(page) < 200:
                return total


async def consume_flow_runs(since: float) -> list[Any]:
    from datetime import UTC, datetime

    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterStartTime,
    )

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(like_="consume@"),
                start_time=FlowRunFilterStartTime(after_=datetime.fromtimestamp(since, UTC)),
            )
        )
    return [r.id for r in runs]


def throughput_round(db_url: str, stub_url: str, concurrency: int) -> dict[str, Any]:
    """One round: queue THROUGHPUT_EMAILS signups, drain them with the flow, then replay
    the bodies the stub received as the baseline."""
    from flows.email_dispatch import dispatch_summary, email_dispatch

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, raw_user_meta_data)"
            " SELECT gen_random_uuid(), 'bulk' || gen_random_uuid() || '@example.com',"
            "        jsonb_build_object('full_name', 'Bulk <User> ' || g)"
            " FROM generate_series(1, %s) AS g",
            (THROUGHPUT_EMAILS,),
        )
    clear(stub_url)

    async def run() -> tuple[dict[str, Any], float, int]:
        started = time.perf_counter()
        state = await email_dispatch(mode="drain", time_budget=1800, return_state=True)
        elapsed = time.perf_counter() - started
        summary = await dispatch_summary(state)
        await asyncio.sleep(3)  # the server records task runs asynchronously
        runs = await count_task_runs([state.state_details.flow_run_id])
        return summary, elapsed, runs

    summary, elapsed, task_runs = asyncio.run(run())
    assert summary["sent"] == THROUGHPUT_EMAILS, summary
    bodies = [r["body"] for r in received(stub_url)]
    assert len(bodies) == THROUGHPUT_EMAILS
    clear(stub_url)
    base = asyncio.run(baseline(stub_url, bodies, concurrency))
    clear(stub_url)
    wire = asyncio.run(transport_baseline(stub_url, bodies, concurrency))
    clear(stub_url)
    eps = THROUGHPUT_EMAILS / elapsed
    return {
        "eps": eps,
        "baseline_eps": base,
        "ratio": eps / base,
        "transport_eps": wire,
        "transport_ratio": eps / wire,
        "task_runs": task_runs,
    }


def throughput(db_url: str, stub_url: str, concurrency: int) -> dict[str, Any]:
    """Alternate dispatch and baseline ROUNDS times; the machine is shared, so report the
    median round (by ratio) and every round's ratio."""
    rounds = []
    for number in range(1, ROUNDS + 1):
        rounds.append(throughput_round(db_url, stub_url, concurrency))
        print(f"round {number}: {rounds[-1]}", file=sys.stderr, flush=True)
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    task_runs = sum(r["task_runs"] for r in rounds)
    return {
        "throughput_emails": THROUGHPUT_EMAILS,
        "throughput_rounds": ROUNDS,
        "throughput_eps": round(median["eps"], 1),
        "baseline_eps": round(median["baseline_eps"], 1),
        "ratio": round(median["ratio"], 3),
        "round_ratios": [round(r["ratio"], 3) for r in rounds],
        "transport_eps": round(median["transport_eps"], 1),
        "transport_ratio": round(statistics.median(r["transport_ratio"] for r in rounds), 3),
        "round_transport_ratios": [round(r["transport_ratio"], 3) for r in rounds],
        "drain_task_runs_per_10k": round(task_runs * 10_000 / (THROUGHPUT_EMAILS * ROUNDS), 1),
    }


def latency(db_url: str, stub_url: str, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    log = open(log_dir / "consume.log", "wb")  # noqa: SIM115
    consumer = subprocess.Popen(
        [str(Path(sys.executable).parent / "taskflow-jobs"), "consume"],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    since = time.time()
    total = LATENCY_RATE * LATENCY_SECONDS
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%'"
            ).fetchone():
                assert consumer.poll() is None and time.monotonic() < deadline, "consume failed"
                time.sleep(0.1)
            # warm up: the first flow run of the process pays for imports and client setup
            conn.execute(
                "INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'warm@example.com')"
            )
            while not received(stub_url):
                time.sleep(0.05)
            clear(stub_url)

            issued: dict[str, float] = {}
            start = time.monotonic()
            for i in range(total):
                slot = start + i / LATENCY_RATE
                pause = slot - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                address = f"steady{i}@example.com"
                issued[address] = time.time()
                conn.execute(
                    "INSERT INTO auth.users (id, email, raw_user_meta_data)"
                    " VALUES (gen_random_uuid(), %s, jsonb_build_object('full_name', %s::text))",
                    (address, f"Steady {i}"),
                )
            achieved_rate = total / (time.monotonic() - start)
        deadline = time.monotonic() + 60
        rows = received(stub_url)
        while len({r["to"] for r in rows}) < total and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = received(stub_url)
    finally:
        consumer.send_signal(signal.SIGTERM)
        exit_code = consumer.wait(60)
        log.close()
    first_receipt: dict[str, float] = {}
    for row in rows:
        first_receipt.setdefault(row["to"], row["at"])
    latencies = [(first_receipt[a] - t) * 1000 for a, t in issued.items() if a in first_receipt]
    flow_runs = asyncio.run(consume_flow_runs(since))
    task_runs = asyncio.run(count_task_runs(flow_runs)) if flow_runs else 0
    return {
        "latency_emails": total,
        "latency_delivered": len(latencies),
        "latency_rate_per_s": round(achieved_rate, 1),
        "latency_p50_ms": round(statistics.median(latencies), 1),
        "latency_p99_ms": round(percentile(latencies, 0.99), 1),
        "latency_max_ms": round(max(latencies), 1),
        "consume_flow_runs": len(flow_runs),
        "consume_task_runs": task_runs,
        "consume_task_runs_per_10k": round(task_runs * 10_000 / (total + 1), 1),
        "consume_exit_code": exit_code,
    }


def main() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from taskflow_jobs import net
    from taskflow_jobs.devstack import processes, up
    from taskflow_jobs.settings import get_settings, load_settings

    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    supervisor = processes.Supervisor(work / "logs")
    stub = None
    try:
        settings = load_settings(data_dir=work / "data", database_url=None)
        stack = up.start_stack(settings, supervisor, prefect_port=net.free_port())
        stub_port = net.free_port()
        stub = start_stub(stub_port, supervisor.log_dir)
        stub_url = f"http://127.0.0.1:{stub_port}"
        env = {
            **stack.child_env(),
            "TASKFLOW_DATA_DIR": str(work / "data"),
            "EMAIL_PROVIDER": "sendgrid",
            "SENDGRID_API_URL": stub_url,
            "SENDGRID_API_KEY": API_KEY,
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        os.environ.update(env)
        get_settings.cache_clear()
        concurrency = get_settings().sendgrid_concurrency
        print(f"stack up in {work}", file=sys.stderr, flush=True)
        figures: dict[str, Any] = {}
        # Prefect read its settings when `up` imported it, before this server existed
        with temporary_settings(updates={PREFECT_API_URL: stack.prefect_api_url}):
            if "throughput" in PARTS:
                figures |= throughput(stack.database_url, stub_url, concurrency)
                print(f"throughput: {figures}", file=sys.stderr, flush=True)
            if "latency" in PARTS:
                figures |= latency(stack.database_url, stub_url, env, supervisor.log_dir)
            if "consent" in PARTS:
                figures |= consent(stack.database_url, stub_url)
    finally:
        if stub is not None:
            os.killpg(stub.pid, signal.SIGTERM)
            stub.wait(10)
        supervisor.stop()
    result = {
        "bench": "dispatch",
        **figures,
        "email_batch_size": get_settings().email_batch_size,
        "email_concurrency": get_settings().email_concurrency,
        "sendgrid_concurrency": concurrency,
        "baseline": "same bodies, same httpx client and concurrency, straight to the stub",
        "transport_baseline": "same bodies through the provider's own connection pool and request "
        "parts, same concurrency: the dispatcher's own overhead",
        "consent_baseline": "the same dispatcher and messages without the consent step",
        "goals": {
            "ratio": ">= 0.9",
            "consent_ratio": ">= 0.95",
            "latency_p50_ms": "<= 100",
            "latency_p99_ms": "<= 1000",
            "task_runs_per_10k": "a few hundred at most",
        },
        "machine": "2 shared cores: indicative",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
