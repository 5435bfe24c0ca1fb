"""The shared provider rate limit: Postgres token bucket versus Prefect's global concurrency
limit with `rate_limit(strict=True)`, then four real consumers under the kept one.

1. Mechanisms, same run, same rate: four processes each take tokens as fast as they are
   granted for RATE_SECONDS. Figures: the most tokens in any 10 s window against the
   limit (+5 % allowed), the rate achieved, and the cost: CPU seconds of every process
   involved (the four clients, the Prefect server, PostgreSQL) per 1,000 tokens, and
   round trips per token.
2. Four `taskflow-jobs consume` processes, SENDGRID_RATE_LIMIT=CONSUMER_RATE, a backlog
   larger than a minute's worth, the SendGrid stand-in in its own process, a 60 s run:
   the most emails the stand-in received in any 10 s window.

The last line printed is one JSON object; `ratio` = Prefect's CPU cost / ours (> 1: ours
is cheaper), and the limit figures are each window's peak divided by the limit.

    python bench/ratelimit.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
import psycopg

RATE = float(os.environ.get("BENCH_RATE", "100"))
RATE_SECONDS = float(os.environ.get("BENCH_RATE_SECONDS", "30"))
CONSUMER_RATE = float(os.environ.get("BENCH_CONSUMER_RATE", "50"))
CONSUMER_SECONDS = float(os.environ.get("BENCH_CONSUMER_SECONDS", "60"))
CLIENTS = 4
WINDOW = 10.0
GCL_NAME = "bench-sendgrid-rate"

# one greedy client: take tokens until the deadline, print the times and the CPU of its loop
CLIENT = """
import json, os, sys, time
kind, rate, seconds, url, name = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), *sys.argv[4:]
times, trips = [], 0
if kind == "postgres":
    from taskflow_jobs.jobs.ratelimit import ProviderThrottle
    throttle = ProviderThrottle("bench-sendgrid", rate, url)
    throttle.take()  # connect before the clock starts
    cpu0 = os.times()
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        if throttle.wait_blocking(end):
            times.append(time.time())
    trips = throttle.round_trips
else:
    from prefect.concurrency.sync import rate_limit
    cpu0 = os.times()
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        try:
            rate_limit(name, strict=True, timeout_seconds=max(0.1, end - time.monotonic()))
        except TimeoutError:
            break
        if time.monotonic() < end:
            times.append(time.time())
        trips += 1
usage = os.times()
cpu = usage.user + usage.system - cpu0.user - cpu0.system
print(json.dumps({"times": times, "cpu": cpu, "trips": trips}))
"""


def max_in_window(times: list[float], window: float) -> int:
    times, best, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes, their live descendants and the ones they reaped
    (a PostgreSQL backend that exited is in its postmaster's children_* times)."""
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            t = process.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in process.children(recursive=True):
                c = child.cpu_times()
                total += c.user + c.system
        except psutil.NoSuchProcess:
            continue
    return total


def postmaster_of(data_dir: Path) -> int:
    """The embedded PostgreSQL of this run (not the other clusters on the machine)."""
    for p in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if p.info["name"] == "postgres" and str(data_dir) in cmdline and "-D" in cmdline:
            return p.pid
    raise RuntimeError(f"no postmaster for {data_dir}")


async def create_gcl(rate: float, api_url: str) -> None:
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect read its settings when it was imported, before the server existed
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        await _create_gcl(get_client(), GlobalConcurrencyLimitCreate, rate)


async def _create_gcl(client: Any, create: Any, rate: float) -> None:
    async with client:
        await client.create_global_concurrency_limit(
            create(name=GCL_NAME, limit=max(1, int(rate * 0.1)), slot_decay_per_second=rate)
        )


def mechanism(kind: str, url: str, env: dict[str, str], servers: list[int]) -> dict[str, Any]:
    before = tree_cpu(servers)
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, kind, str(RATE), str(RATE_SECONDS), url, GCL_NAME],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(CLIENTS)
    ]
    outputs = [json.loads(c.communicate(timeout=RATE_SECONDS + 120)[0]) for c in clients]
    time.sleep(1)  # their database sessions end and are reaped
    server_cpu = tree_cpu(servers) - before
    times = [t for o in outputs for t in o["times"]]
    client_cpu = sum(o["cpu"] for o in outputs)
    peak = max_in_window(times, WINDOW)
    return {
        "tokens": len(times),
        "achieved_per_s": round(len(times) / RATE_SECONDS, 1),
        "peak_10s_window": peak,
        "peak_vs_limit": round(peak / (RATE * WINDOW), 3),
        "client_cpu_s": round(client_cpu, 2),
        "server_cpu_s": round(server_cpu, 2),
        "cpu_ms_per_token": round((client_cpu + server_cpu) * 1000 / max(1, len(times)), 3),
        "round_trips_per_token": round(sum(o["trips"] for o in outputs) / max(1, len(times)), 3),
    }


def consumers(url: str, stub_url: str, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    from bench._stub import clear, received

    backlog = int(CONSUMER_RATE * CONSUMER_SECONDS * 1.2)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, raw_user_meta_data)"
            " SELECT gen_random_uuid(), 'rate' || g || '@example.com',"
            "        jsonb_build_object('full_name', 'Rate ' || g)"
            " FROM generate_series(1, %s) AS g",
            (backlog,),
        )
    clear(stub_url)
    processes = []
    for i in range(CLIENTS):
        log = open(log_dir / f"consume-{i}.log", "wb")  # noqa: SIM115
        processes.append(
            subprocess.Popen(
                [str(Path(sys.executable).parent / "taskflow-jobs"), "consume"],
                env={**os.environ, **env, "SENDGRID_RATE_LIMIT": str(CONSUMER_RATE)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        deadline = time.monotonic() + 120
        while not received(stub_url):
            assert time.monotonic() < deadline, "the consumers did not start"
            time.sleep(0.2)
        first = min(r["at"] for r in received(stub_url))
        time.sleep(max(0.0, first + CONSUMER_SECONDS - time.time()))
    finally:
        for p in processes:
            os.killpg(p.pid, signal.SIGTERM)
        for p in processes:
            p.wait(60)
    times = sorted(r["at"] for r in received(stub_url) if r["status"] < 300)
    times = [t for t in times if t < times[0] + CONSUMER_SECONDS]
    peak = max_in_window(times, WINDOW)
    return {
        "consumers": CLIENTS,
        "consumer_rate_limit": CONSUMER_RATE,
        "consumer_run_s": CONSUMER_SECONDS,
        "consumer_emails": len(times),
        "consumer_achieved_per_s": round(len(times) / CONSUMER_SECONDS, 1),
        "consumer_peak_10s_window": peak,
        "consumer_peak_vs_limit": round(peak / (CONSUMER_RATE * WINDOW), 3),
    }


def main() -> None:
    import asyncio

    from bench._stub import API_KEY, start_stub
    from taskflow_jobs import net
    from taskflow_jobs.devstack import processes, up
    from taskflow_jobs.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="bench-ratelimit-"))
    supervisor = processes.Supervisor(work / "logs")
    stub = None
    try:
        settings = load_settings(data_dir=work / "data", database_url=None)
        stack = up.start_stack(settings, supervisor, prefect_port=net.free_port())
        env = {**stack.child_env(), "PREFECT_LOGGING_LEVEL": "WARNING"}
        os.environ.update(env)
        asyncio.run(create_gcl(RATE, env["PREFECT_API_URL"]))
        servers = [c.process.pid for c in supervisor.children]
        servers.append(postmaster_of((work / "data").resolve()))
        print("stack up; measuring the mechanisms…", file=sys.stderr, flush=True)
        ours = mechanism("postgres", stack.database_url, env, servers)
        print(f"postgres bucket: {ours}", file=sys.stderr, flush=True)
        theirs = mechanism("prefect", stack.database_url, env, servers)
        print(f"prefect rate_limit: {theirs}", file=sys.stderr, flush=True)

        stub_port = net.free_port()
        stub = start_stub(stub_port, supervisor.log_dir)
        stub_url = f"http://127.0.0.1:{stub_port}"
        consumer_env = {
            **env,
            "TASKFLOW_DATA_DIR": str(work / "data"),
            "EMAIL_PROVIDER": "sendgrid",
            "SENDGRID_API_URL": stub_url,
            "SENDGRID_API_KEY": API_KEY,
        }
        print("four consumers under the shared limit…", file=sys.stderr, flush=True)
        figures = consumers(stack.database_url, stub_url, consumer_env, supervisor.log_dir)
    finally:
        if stub is not None:
            os.killpg(stub.pid, signal.SIGTERM)
            stub.wait(10)
        supervisor.stop()
    result = {
        "bench": "ratelimit",
        "rate_limit_per_s": RATE,
        "clients": CLIENTS,
        "run_s": RATE_SECONDS,
        "postgres_bucket": ours,
        "baseline": {"what": "Prefect global concurrency limit, rate_limit(strict=True)", **theirs},
        **figures,
        "kept": "postgres_bucket",
        "goal": "peak_vs_limit <= 1.05 over any 10 s window; lower CPU per token than Prefect",
        "ratio": round(theirs["cpu_ms_per_token"] / max(1e-9, ours["cpu_ms_per_token"]), 2),
        "machine": "2 shared cores: indicative",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
