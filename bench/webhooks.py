"""Benchmark: accepted webhooks per second (each one committed) and response times at
concurrency 16, against a FastAPI route that only returns 202, in the same run.

Both servers run as separate processes under uvicorn on loopback (the receiver exactly as
`taskflow-jobs webhooks` starts it, on an embedded PostgreSQL); the load generator is an
httpx AsyncClient in this process that signs every request. Client and servers share the
machine's cores, so the figures are indicative. The last line is one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

# bench/ holds queue.py, which would shadow the stdlib `queue` module: take bench/ off the
# import path and put the project root there instead (for `bench._scratch`).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench._scratch import migrated_database, scratch_postgres
from taskflow_jobs import db, net
from taskflow_jobs.devstack import processes
from taskflow_jobs.webhooks.auth import sign

CONCURRENCY = 16
REQUESTS = int(os.environ.get("BENCH_WEBHOOK_REQUESTS", "3000"))
WARMUP = 300
SECRET = "bench-secret-" + uuid.uuid4().hex
BIN = Path(sys.executable).parent / "taskflow-jobs"

BASELINE_APP = """
import sys, uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()

@app.post("/api/notify")
@app.post("/webhooks/supabase")
async def accept() -> JSONResponse:
    return JSONResponse({"status": "accepted"}, status_code=202)

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, server_header=False)
"""


def notify_body(n: int) -> bytes:
    return json.dumps(
        {
            "type": "notification",
            "data": {"to": "bench@example.com", "subject": f"bench {n}", "body": "load test"},
            "idempotency_key": f"bench-{uuid.uuid4().hex}",
        }
    ).encode()


def signup_body(n: int) -> bytes:
    return json.dumps(
        {
            "type": "INSERT",
            "table": "users",
            "schema": "auth",
            "old_record": None,
            "record": {
                "id": str(uuid.uuid4()),
                "email": f"user{n}@example.com",
                "raw_user_meta_data": {"full_name": f"User {n}"},
            },
        }
    ).encode()


async def load(url: str, make_body: Callable[[int], bytes], count: int) -> dict:
    """`count` signed POSTs from CONCURRENCY workers; latencies of the 2xx ones."""
    latencies: list[float] = []
    failures: dict[int, int] = {}
    next_n = iter(range(count))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            for n in next_n:
                body = make_body(n)
                headers = {"Content-Type": "application/json", **sign(SECRET, body)}
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                elapsed = time.perf_counter() - started
                if response.status_code == 202:
                    latencies.append(elapsed)
                else:
                    failures[response.status_code] = failures.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "accepted": len(latencies),
        "failed": failures,
    }


def measure(url: str, make_body: Callable[[int], bytes]) -> dict:
    asyncio.run(load(url, make_body, WARMUP))
    return asyncio.run(load(url, make_body, REQUESTS))


def main() -> None:
    with scratch_postgres("bench-webhooks-") as (embedded, data):
        url = migrated_database(embedded, db.APP_DATABASE)
        supervisor = processes.Supervisor(data / "logs")
        try:
            port, base_port = net.free_port(), net.free_port()
            env = {
                "WEBHOOK_SECRET": SECRET,
                "WEBHOOK_PORT": str(port),
                "DATABASE_URL": url,
                "PREFECT_HOME": str(data / "prefect"),
                "PREFECT_API_URL": "",
            }
            receiver = supervisor.start("receiver", [str(BIN), "webhooks"], env)
            supervisor.start("baseline", [sys.executable, "-c", BASELINE_APP, str(base_port)], {})
            net.wait_for_http(f"http://127.0.0.1:{port}/healthz", 60, receiver.process)
            base_health = f"http://127.0.0.1:{base_port}/api/notify"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.post(base_health).status_code == 202:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "baseline did not start"
                time.sleep(0.2)

            base = measure(f"http://127.0.0.1:{base_port}/api/notify", notify_body)
            notify = measure(f"http://127.0.0.1:{port}/api/notify", notify_body)
            supabase = measure(f"http://127.0.0.1:{port}/webhooks/supabase", signup_body)
        finally:
            supervisor.stop()
        with db.connect(url, autocommit=True) as conn:
            committed = conn.execute("SELECT count(*) AS n FROM jobs.messages").fetchone()["n"]

    expected = notify["accepted"] + supabase["accepted"] + 2 * WARMUP
    print(f"baseline  (FastAPI route returning 202): {base}")
    print(f"receiver  POST /api/notify:              {notify}")
    print(f"receiver  POST /webhooks/supabase:       {supabase}")
    print(f"jobs committed: {committed} (accepted answers: {expected})")
    result = {
        "bench": "webhooks",
        "concurrency": CONCURRENCY,
        "requests": REQUESTS,
        "accepted_per_s": notify["per_s"],
        "p50_ms": notify["p50_ms"],
        "p99_ms": notify["p99_ms"],
        "supabase_per_s": supabase["per_s"],
        "supabase_p50_ms": supabase["p50_ms"],
        "supabase_p99_ms": supabase["p99_ms"],
        "failed": {**notify["failed"], **supabase["failed"]},
        "committed": committed,
        "every_accepted_job_committed": committed == expected,
        "baseline": {"what": "FastAPI route that only returns 202", **base},
        "ratio": round(notify["per_s"] / base["per_s"], 3),
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))
    if committed != expected or result["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
