"""Benchmark of email dispatch. Prints one JSON object as its last line.

1. Throughput: 10,000 signups queued at once, sent by one `email-dispatch` flow run
   (drain mode) to a SendGrid-compatible stub running in its own process. Baseline, in
   the same run: the same request bodies (as the stub received them) posted to the same
   stub by the same httpx client configuration, encoding and concurrency, with no queue,
   no database and no Prefect. Goal: ratio >= 0.9.
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

import httpx
import orjson
import psycopg

THROUGHPUT_EMAILS = int(os.environ.get("BENCH_EMAILS", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LATENCY_RATE = 100  # signups per second
LATENCY_SECONDS = int(os.environ.get("BENCH_LATENCY_SECONDS", "30"))
CONSENT_EMAILS = int(os.environ.get("BENCH_CONSENT_EMAILS", "2000"))
CONSENT_ROUNDS = int(os.environ.get("BENCH_CONSENT_ROUNDS", "7"))
SUPPRESSED = 10_000
PARTS = set(os.environ.get("BENCH_PARTS", "throughput,latency,consent").split(","))
API_KEY = "SG.bench-key"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def start_stub(port: int, log_dir: Path) -> subprocess.Popen:
    from taskflow_jobs.net import wait_for_http

    log = open(log_dir / "stub.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskflow_jobs.devstack.sendgrid_stub",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_http(f"http://127.0.0.1:{port}/_stub/received", 30, process)
    return process


def received(stub_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{stub_url}/_stub/received", timeout=120).json()


def clear(stub_url: str) -> None:
    httpx.delete(f"{stub_url}/_stub/received", timeout=30)


async def baseline(stub_url: str, bodies: list[dict[str, Any]], concurrency: int) -> float:
    """Emails/s posting `bodies` straight to the stub, as the SendGrid provider's client does
    (same headers, same limits, the same orjson encoding of each body)."""
    client = httpx.AsyncClient(
        timeout=30,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "User-Agent": "taskflow-jobs",
            "Content-Type": "application/json",
        },
    )
    limit = asyncio.Semaphore(concurrency)
    url = f"{stub_url}/v3/mail/send"

    async def post(body: dict[str, Any]) -> None:
        async with limit:
            response = await client.post(url, content=orjson.dumps(body))
            assert response.status_code == 202, response.status_code

    started = time.perf_counter()
    await asyncio.gather(*(post(b) for b in bodies))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return len(bodies) / elapsed


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
    eps = THROUGHPUT_EMAILS / elapsed
    return {"eps": eps, "baseline_eps": base, "ratio": eps / base, "task_runs": task_runs}


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


class NoConsent:
    """The dispatcher's consent step minus the consent: profiles only, nothing skipped."""

    def look_up(self, conn: Any, parsed: Any) -> Any:
        from taskflow_jobs.email.compose import load_profiles, profile_ids
        from taskflow_jobs.email.consent import Screening

        ids = profile_ids(p for _, p in parsed)
        return (load_profiles(conn, ids) if ids else {}), Screening(kept=list(parsed))


def seed_consent(db_url: str) -> list[tuple[str, str]]:
    """Users with preference rows (all enabled) and a suppression list of other addresses."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        users = conn.execute(
            "INSERT INTO auth.users (id, email, raw_user_meta_data)"
            " SELECT gen_random_uuid(), 'pref' || g || '@example.com',"
            "        jsonb_build_object('full_name', 'Pref ' || g)"
            " FROM generate_series(1, %s) AS g RETURNING id::text, email",
            (CONSENT_EMAILS,),
        ).fetchall()
        conn.execute("DELETE FROM jobs.messages")  # their welcome emails are not measured
        conn.execute(
            "INSERT INTO public.notification_preferences (user_id, type, enabled)"
            " SELECT u.id, t, true FROM auth.users u, unnest(ARRAY['task_assigned',"
            " 'notification']) AS t WHERE u.email LIKE 'pref%%'"
        )
        conn.execute(
            "INSERT INTO jobs.suppressions (email, reason, source)"
            " SELECT 'gone' || g || '@example.com', 'bounce', 'bench'"
            " FROM generate_series(1, %s) AS g",
            (SUPPRESSED,),
        )
    return users


def enqueue_consent_round(db_url: str, users: list[tuple[str, str]]) -> None:
    payloads = [
        {"type": "task_assigned", "task_id": i, "task_title": f"Task {i}", "assignee_id": uid}
        if i % 2
        else {"type": "notification", "to": address, "subject": "Build", "body": "All green."}
        for i, (uid, address) in enumerate(users)
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT jobs.send_batch('email_notifications', %s::jsonb[])",
            ([json.dumps(p) for p in payloads],),
        )


def drain_library(db_url: str, with_consent: bool) -> tuple[float, float]:
    """Emails/s of one drain by the dispatcher's own loop, and its CPU ms per email."""
    from taskflow_jobs.email.outcomes import DispatchStats
    from taskflow_jobs.email.worker.batch import Dispatcher
    from taskflow_jobs.email.worker.run import RunPlan, run_dispatch
    from taskflow_jobs.settings import get_settings

    async def run() -> tuple[DispatchStats, float, float]:
        settings = get_settings()
        dispatcher = await Dispatcher(settings, db_url).open()
        if not with_consent:
            dispatcher.consent = NoConsent()  # type: ignore[assignment]
        stats = DispatchStats()
        plan = RunPlan(budget=600, concurrency=settings.email_concurrency)

        async def run_batch(window: float, number: int, ticket: Any) -> Any:
            return await dispatcher.run_batch(window, stats, ticket)

        started, cpu = time.perf_counter(), time.process_time()
        try:
            await run_dispatch(dispatcher, run_batch, plan, stats)
        finally:
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            await dispatcher.close()
        return stats, elapsed, cpu

    stats, elapsed, cpu = asyncio.run(run())
    assert stats.sent == CONSENT_EMAILS, stats.summary()
    return CONSENT_EMAILS / elapsed, cpu * 1000 / CONSENT_EMAILS


def consent(db_url: str, stub_url: str) -> dict[str, Any]:
    users = seed_consent(db_url)
    rounds: list[dict[str, float]] = []
    for number in range(CONSENT_ROUNDS):
        figures: dict[str, float] = {}
        # ABBA: which variant goes first alternates, so drift favours neither
        for with_consent in (True, False) if number % 2 == 0 else (False, True):
            enqueue_consent_round(db_url, users)
            name = "with" if with_consent else "without"
            figures[name], figures[f"{name}_cpu_ms"] = drain_library(db_url, with_consent)
            clear(stub_url)
        figures["ratio"] = figures["with"] / figures["without"]
        # cost per email without over with: >= 0.95 means at most ~5% more CPU
        figures["cpu_ratio"] = figures["without_cpu_ms"] / figures["with_cpu_ms"]
        rounds.append(figures)
        print(f"consent round {number + 1}: {figures}", file=sys.stderr, flush=True)
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    cpu = sorted(rounds, key=lambda r: r["cpu_ratio"])[len(rounds) // 2]
    return {
        "consent_emails": CONSENT_EMAILS,
        "consent_rounds": CONSENT_ROUNDS,
        "consent_suppressed_addresses": SUPPRESSED,
        "consent_eps": round(median["with"], 1),
        "consent_baseline_eps": round(median["without"], 1),
        "consent_ratio": round(median["ratio"], 3),
        "consent_round_ratios": [round(r["ratio"], 3) for r in rounds],
        "consent_cpu_ms_per_email": round(cpu["with_cpu_ms"], 3),
        "consent_baseline_cpu_ms_per_email": round(cpu["without_cpu_ms"], 3),
        "consent_cpu_ratio": round(cpu["cpu_ratio"], 3),
        "consent_round_cpu_ratios": [round(r["cpu_ratio"], 3) for r in rounds],
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
