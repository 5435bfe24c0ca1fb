"""What the gap between dispatch and bare httpx is made of (a profile, not a benchmark).

Drains N queued signups with the Dispatcher alone (no Prefect) to the SendGrid stand-in
in its own process, then posts the same bodies with the same httpx client directly, and
through the provider's own transport (bench/_stub.py), then drains again under cProfile
and splits our process's CPU by where it went. Prints one
JSON object; `make bench` skips this file (it starts with an underscore).

    python bench/_dispatch_gap.py [N]
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._scratch import migrated_database, scratch_postgres
from bench._stub import API_KEY, baseline, clear, received, transport_baseline
from taskflow_jobs import db, net
from taskflow_jobs.settings import load_settings
from tests.support.dispatch_helpers import _drain

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
# where a function lives -> the part of the work it is
PARTS = [
    ("http client (httpx, httpcore, h11, anyio)", ("httpx", "httpcore", "h11", "anyio")),
    ("rendering (jinja2, templates)", ("jinja2", "email/render.py", "email/templates")),
    ("payload parsing and composing", ("pydantic", "email/messages.py", "email/compose.py")),
    ("request bodies (sendgrid.py, orjson)", ("providers/sendgrid.py",)),
    ("database (psycopg, queue, threads)", ("psycopg", "jobs/queue.py", "threading", "thread.py")),
    ("rate limit hook", ("jobs/ratelimit.py",)),
    ("event loop (asyncio)", ("asyncio",)),
    ("batch logic (worker/, outcomes, providers/base.py)", ("worker/", "outcomes", "base.py")),
]


def signups(url: str) -> None:
    with db.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, raw_user_meta_data)"
            " SELECT gen_random_uuid(), 'u' || g || '@example.com',"
            "        jsonb_build_object('full_name', 'User ' || g)"
            " FROM generate_series(1, %s) AS g",
            (N,),
        )


def split(profile: cProfile.Profile) -> dict[str, float]:
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    parts: dict[str, float] = {name: 0.0 for name, _ in PARTS}
    parts["other"] = 0.0
    parts["socket and poll calls"] = 0.0
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        if filename == "~" and any(w in function for w in ("socket", "select", "poll")):
            parts["socket and poll calls"] += tottime
            continue
        for name, needles in PARTS:
            if any(n in filename for n in needles):
                parts[name] += tottime
                break
        else:
            parts["other"] += tottime
    return parts


def main() -> None:
    port = net.free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "taskflow_jobs.devstack.sendgrid_stub", "--port", str(port)]
        + ["--api-key", API_KEY],
        start_new_session=True,
    )
    stub_url = f"http://127.0.0.1:{port}"
    net.wait_for_http(f"{stub_url}/_stub/received", 30, stub)
    try:
        with scratch_postgres("bench-gap-") as (embedded, _root):
            url = migrated_database(embedded, "gap")
            settings = load_settings(
                database_url=url,
                email_provider="sendgrid",
                sendgrid_api_url=stub_url,
                sendgrid_api_key=API_KEY,
            )
            signups(url)
            cpu, wall = time.process_time(), time.perf_counter()
            asyncio.run(_drain(settings, None))
            ours = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}
            bodies = [r["body"] for r in received(stub_url)]
            assert len(bodies) == N, len(bodies)
            clear(stub_url)
            cpu, wall = time.process_time(), time.perf_counter()
            asyncio.run(baseline(stub_url, bodies, settings.sendgrid_concurrency))
            base = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}
            clear(stub_url)
            cpu, wall = time.process_time(), time.perf_counter()
            asyncio.run(transport_baseline(stub_url, bodies, settings.sendgrid_concurrency))
            wire = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}
            clear(stub_url)
            signups(url)
            profile = cProfile.Profile()
            profile.enable()
            asyncio.run(_drain(settings, None))
            profile.disable()
    finally:
        os.killpg(stub.pid, signal.SIGTERM)
        stub.wait(10)
    parts = split(profile)
    total = sum(parts.values())
    result = {
        "bench": "dispatch_gap",
        "emails": N,
        "ours_eps_without_prefect": round(N / ours["wall"], 1),
        "ours_cpu_us_per_email": round(ours["cpu"] / N * 1e6),
        "baseline_eps": round(N / base["wall"], 1),
        "baseline_cpu_us_per_email": round(base["cpu"] / N * 1e6),
        "ratio": round(base["wall"] / ours["wall"], 3),
        "transport_eps": round(N / wire["wall"], 1),
        "transport_cpu_us_per_email": round(wire["cpu"] / N * 1e6),
        "transport_ratio": round(wire["wall"] / ours["wall"], 3),
        # the profiled drain's CPU split by part, scaled to the unprofiled CPU per email
        "cpu_us_per_email_by_part": {
            k: round(v / total * ours["cpu"] / N * 1e6) for k, v in parts.items()
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
