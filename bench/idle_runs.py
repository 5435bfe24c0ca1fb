"""Benchmark: flow runs a day that `make run` creates at idle, against the every-minute
sweep schedule the product used to have, measured in the same run.

`taskflow-jobs up` starts in a scratch data directory and stays idle (no traffic) for
BENCH_IDLE_SECONDS; every flow run due in that window that started is counted (not the
runs a schedule queued for later). Then an every-minute schedule is put back on the
`email-dispatch` deployment (the baseline) for another window of the same length. Runs a
day = the non-cron runs of the window scaled to a day, plus the cron runs a day the
deployments' own schedules make (daily-stats, health-check, cleanup, weekly-summary).
The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterStartTime,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.schedules import CronSchedule
from prefect.settings import PREFECT_API_URL, temporary_settings

from taskflow_jobs.net import free_port

WINDOW = float(os.environ.get("BENCH_IDLE_SECONDS", "300"))
GRACE = 45.0  # a run due at the end of a window starts within a worker poll and a spawn
BIN = Path(sys.executable).parent / "taskflow-jobs"
READY = "Press Ctrl-C to stop everything."
# runs a day of each cron schedule in prefect.yaml (daily, hourly, weekly, weekly)
CRON_RUNS_A_DAY = {"0 1 * * *": 1, "0 * * * *": 24, "0 2 * * 0": 1 / 7, "0 0 * * 1": 1 / 7}


def runs_that_ran(since: datetime, until: datetime, skip: set[object]) -> list[str]:
    """Runs due in [since, until) that started, except those of the `skip` deployments
    (crons): what the window cost, counted the same way for both windows.

    Prefect's start-time filter compares coalesce(start_time, expected_start_time), so it
    also matches the runs a schedule has queued for the coming hour (about 60 of them for
    an every-minute schedule): only a run with a real start time counts. A schedule added
    to a deployment also makes runs for slots already past, which are not what it costs a
    day: only runs due in the window count, and the caller waits GRACE after it so the
    last slot's run has had time to start."""
    started = FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since, is_null_=False))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=started, limit=200)
    for r in runs:
        print(f"  {r.name}: due {r.expected_start_time:%H:%M:%S}, started "
              f"{r.start_time:%H:%M:%S}", file=sys.stderr)  # fmt: skip
    return [
        r.name
        for r in runs
        if r.deployment_id not in skip
        and r.start_time is not None
        and since <= (r.expected_start_time or r.start_time) < until
    ]


def crons() -> tuple[float, set[object]]:
    """(cron runs a day, the deployments that have a cron schedule)."""
    total, ids = 0.0, set()
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            for s in deployment.schedules:
                cron = getattr(s.schedule, "cron", None)
                if s.active and cron:
                    total += CRON_RUNS_A_DAY.get(cron, 0)
                    ids.add(deployment.id)
    return total, ids


def wait_for_scheduled_runs(deployment_id: object, timeout: float = 120) -> None:
    """Until Prefect's scheduler has queued the new schedule's runs: a schedule added to a
    deployment waits for the scheduler's next full pass (up to a minute), and a window
    started before it would miss the first slots."""
    waiting = FlowRunFilter(state={"type": {"any_": [StateType.SCHEDULED]}})
    deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while not client.read_flow_runs(
            flow_run_filter=waiting, deployment_filter=deployment, limit=1
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"the scheduler queued no run within {timeout:.0f}s")
            time.sleep(1)


def window(label: str, skip: set[object]) -> tuple[int, list[str]]:
    since = datetime.now(UTC)
    print(f"{label}: idle for {WINDOW:.0f}s from {since:%H:%M:%S}", file=sys.stderr, flush=True)
    time.sleep(WINDOW)
    until = datetime.now(UTC)
    time.sleep(GRACE)
    names = runs_that_ran(since, until, skip)
    return len(names), names


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "DATABASE_URL", "TASKFLOW_", "WEBHOOK_", "EMAIL_"))
    }
    env.update(
        TASKFLOW_DATA_DIR=str(data / "data"),
        TASKFLOW_PREFECT_PORT=str(port),
        WEBHOOK_PORT=str(free_port()),
        SLACK_WEBHOOK_URL="",
    )
    log = data / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([str(BIN), "up"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while READY not in log.read_text(errors="replace"):
            if up.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"up did not start:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        time.sleep(20)  # the requested daily-stats report and the demo emails settle
        with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
            cron_per_day, cron_ids = crons()
            ours, our_names = window("now", cron_ids)
            with get_client(sync_client=True) as client:
                sweep = client.read_deployment_by_name("email-dispatch/email-dispatch")
                client.create_deployment_schedules(
                    sweep.id, [(CronSchedule(cron="* * * * *", timezone="UTC"), True)]
                )
            wait_for_scheduled_runs(sweep.id)
            old, old_names = window("baseline (every-minute sweep)", cron_ids)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(120)
        shutil.rmtree(data, ignore_errors=True)
    scale = 86400 / WINDOW
    per_day = round(ours * scale + cron_per_day, 1)
    baseline_per_day = round(old * scale + cron_per_day, 1)
    print(
        json.dumps(
            {
                "bench": "idle_runs",
                "window_seconds": WINDOW,
                "runs_in_window": ours,
                "run_names": our_names[:10],
                "cron_runs_per_day": round(cron_per_day, 1),
                "runs_per_day": per_day,
                "baseline_runs_in_window": old,
                "baseline_run_names": old_names[:10],
                "baseline_runs_per_day": baseline_per_day,
                "ratio": round(per_day / baseline_per_day, 4) if baseline_per_day else None,
            }
        )
    )


if __name__ == "__main__":
    main()
