"""Run the comparison: one workload, the same faults, each design in turn; then write
docs/comparison.md, its plots and docs/comparison.json. `make compare` runs this.

    python -m compare.run [--designs taskflow-jobs,supabase-poll,supabase-cron,cloudflare]
                          [--signups 10000] [--report-only]

Each design gets a fresh provider stand-in (its own process) and its own processes and
databases, started before and stopped after its run; the machine runs one design at a time.
The last line printed is one JSON object with every design's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from compare import figures, report
from compare.workload import API_KEY, LOGS, Design, Provider, Workload, play, say
from taskflow_jobs import net
from taskflow_jobs.devstack import processes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "comparison.json"


def designs() -> dict[str, Callable[[], Design]]:
    # deferred: --report-only needs none of the designs (nor their Prefect imports)
    from compare.cloudflare.design import Cloudflare
    from compare.supabase.design import Supabase
    from compare.taskflow_design import TaskflowJobs

    return {
        "taskflow-jobs": TaskflowJobs,
        "supabase-poll": lambda: Supabase("poll"),
        "supabase-cron": lambda: Supabase("cron"),
        "cloudflare": Cloudflare,
    }


def start_provider(supervisor: processes.Supervisor) -> str:
    port = net.free_port()
    argv = [sys.executable, "-m", "compare.provider", "--port", str(port), "--api-key", API_KEY]
    child = supervisor.start("provider", argv, {})
    url = f"http://127.0.0.1:{port}"
    net.wait_for_http(f"{url}/_compare/health", 30, child.process, child.log_path)
    return url


async def _post_all(url: str, n: int, concurrency: int) -> float:
    body = {
        "personalizations": [{"to": [{"email": "baseline@example.com"}]}],
        "from": {"email": "noreply@example.com"},
        "subject": "baseline",
        "content": [{"type": "text/plain", "value": "baseline"}],
    }
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def post() -> None:
            async with gate:
                response = await client.post(
                    f"{url}/v3/mail/send", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post() for _ in range(n)))
        return n / (time.perf_counter() - started)


def provider_baseline(logs: Path, n: int = 2000, concurrency: int = 8) -> dict[str, Any]:
    """The same-run baseline of the ceilings: the provider stand-in alone, posted to by an
    httpx client at the SendGrid provider's default concurrency."""
    supervisor = processes.Supervisor(logs / "baseline")
    try:
        rate = asyncio.run(_post_all(start_provider(supervisor), n, concurrency))
    finally:
        supervisor.stop()
    return {"what": f"{n} posts straight to the provider, concurrency {concurrency}",
            "emails_per_s": round(rate, 1)}  # fmt: skip


def run_design(name: str, make: Callable[[], Design], workload: Workload, logs: Path) -> Any:
    supervisor = processes.Supervisor(logs / name)
    design = make()
    try:
        provider_url = start_provider(supervisor)
        say(f"{name}: starting")
        design.start(provider_url)
        say(f"{name}: running the workload ({workload.signups} signups)")
        return play(design, Provider(provider_url), workload)
    finally:
        design.stop()
        supervisor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", default=",".join(designs()))
    parser.add_argument("--signups", type=int, default=Workload.signups)
    parser.add_argument("--report-only", action="store_true", help="redraw from comparison.json")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.report_only:
        saved = json.loads(RESULTS.read_text())
        report.write(saved, ROOT / "docs")
        return
    base = Workload()
    scale = args.signups / base.signups
    workload = dataclasses.replace(base, signups=args.signups) if scale != 1 else base
    shutil.rmtree(LOGS, ignore_errors=True)
    logs = LOGS
    table = designs()
    results: dict[str, Any] = {
        "workload": dataclasses.asdict(workload),
        "figures": {},
        "series": {},
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    results["baseline"] = provider_baseline(logs)
    say(f"baseline: {results['baseline']}")
    for name in args.designs.split(","):
        run = run_design(name, table[name], workload, logs)
        results["figures"][name] = figures.compute(run)
        results["series"][name] = figures.series(run)
        results["figures"][name]["load_average"] = [round(v, 1) for v in os.getloadavg()]
        brief = {k: v for k, v in results["figures"][name].items() if k != "operator"}
        say(f"{name}: {json.dumps(brief)}")
    RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    report.write(results, ROOT / "docs")
    say(f"logs of the processes: {logs}")
    brief = {
        n: {k: v for k, v in f.items() if k != "operator"} for n, f in results["figures"].items()
    }
    print(json.dumps({"bench": "compare", **brief, "baseline": results["baseline"]}, default=str))


if __name__ == "__main__":
    main()
