"""A cron schedule that fell behind while no worker polled: when the worker comes back, one
run does the work, nothing is Cancelled, no two runs share a name, and what was skipped is
said once (in the receiver's log and in the run's log and artifact).

A deployment of the real weekly-summary flow, one at a time (CANCEL_NEW) like the crons
in prefect.yaml, on a work pool of its own whose worker is not started yet; its schedule
(every 3 s, 5 times) stands in for hours of a cron with nobody polling. The real receiver
(`taskflow-jobs webhooks`) runs throughout and prunes every second. Without the pruner the
worker would submit all five at once and four would end Cancelled.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
)
from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
from prefect.client.schemas.schedules import RRuleSchedule

from taskflow_jobs.monitoring import backlog
from taskflow_jobs.net import free_port
from tests.support.prefect_stack import Deployed
from tests.support.receiver import SECRET
from tests.support.waiting import wait_for

POOL = "taskflow-backlog-test"
NAME = "weekly-summary-burst"
SLOTS, EVERY = 5, 3
CLI = str(Path(sys.executable).parent / "taskflow-jobs")


@pytest.fixture
def stopped_worker_deployment(deployed: Deployed) -> Iterator[tuple[object, dt.datetime]]:
    """The deployment (its first slot 15 s from now, after the scheduler's next pass)."""
    first = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=15)
    rrule = f"DTSTART:{first:%Y%m%dT%H%M%SZ}\nRRULE:FREQ=SECONDLY;INTERVAL={EVERY};COUNT={SLOTS}"
    with deployed.server.client(), get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
        model = client.read_deployment_by_name("weekly-summary/weekly-summary")
        deployment_id = client.create_deployment(
            flow_id=model.flow_id,
            name=NAME,
            work_pool_name=POOL,
            entrypoint=model.entrypoint,
            path=model.path,
            pull_steps=model.pull_steps,
            parameter_openapi_schema=model.parameter_openapi_schema,
            job_variables=model.job_variables,
            schedules=[DeploymentScheduleCreate(schedule=RRuleSchedule(rrule=rrule))],
            concurrency_limit=1,
            concurrency_options=ConcurrencyOptions(
                collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        )
    try:
        yield deployment_id, first
    finally:
        with deployed.server.client(), get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
            client.delete_work_pool(POOL)


def _runs(deployed: Deployed, deployment_id: object) -> list:
    with deployed.server.client(), get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def test_a_schedule_that_fell_behind_runs_once_and_says_what_it_skipped(
    deployed: Deployed, stopped_worker_deployment: tuple[object, dt.datetime], tmp_path: Path
) -> None:
    deployment_id, first = stopped_worker_deployment
    last_slot = first + dt.timedelta(seconds=EVERY * (SLOTS - 1))
    receiver_env = {
        **os.environ,
        **deployed.server.env,
        "DATABASE_URL": deployed.database_url,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PORT": str(free_port()),
        "EMAIL_SWEEP_INTERVAL": "1",
        "TASKFLOW_DATA_DIR": str(tmp_path / "data"),
    }
    receiver_log, worker_log = tmp_path / "receiver.log", tmp_path / "worker.log"
    receiver = _start([CLI, "webhooks"], receiver_env, receiver_log)
    worker = None
    try:
        # the scheduler made the runs; they fall due one after another with no worker
        created = wait_for(lambda: len(_runs(deployed, deployment_id)) >= 3 or None, 30, "runs")
        assert created
        wait_for(
            lambda: dt.datetime.now(dt.UTC) > last_slot + dt.timedelta(seconds=3), 60, "the slots"
        )
        # the receiver left only the newest: the last slot's run
        [kept] = wait_for(lambda: (r := _runs(deployed, deployment_id)) and len(r) == 1 and r, 30,
                          "one run left")  # fmt: skip
        assert kept.expected_start_time == last_slot
        assert kept.state.type.value == "SCHEDULED"
        with deployed.server.client(), get_client(sync_client=True) as client:
            # what `up` renames instead of asking for a second run of the same report
            assert backlog.newest_due(client, f"weekly-summary/{NAME}") == kept.id

        # the worker comes back
        argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
                "--type", "process"]  # fmt: skip
        worker = _start(argv, {**os.environ, **deployed.worker_env}, worker_log)

        def finished() -> object | None:
            runs = _runs(deployed, deployment_id)
            return runs if runs and all(r.state.is_final() for r in runs) else None

        runs = wait_for(finished, 180, "the run to finish")
    finally:
        if worker is not None:
            _stop(worker)
        _stop(receiver)

    # one run did the work; nothing Cancelled, no second run, one name
    assert [(r.id, r.state.name) for r in runs] == [(kept.id, "Completed")], worker_log.read_text()
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert runs[0].name == f"weekly-summary-to-{yesterday}"
    assert "Aborted submission" not in worker_log.read_text()

    # said once: the receiver's lines add up to every run skipped, each counted once
    said = re.findall(rf"skipped (\d+) {NAME} runs? scheduled", receiver_log.read_text())
    skipped = sum(int(n) for n in said)
    assert skipped >= 2, receiver_log.read_text()
    with deployed.server.client(), get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[kept.id]))
        )
    note = f"skipped {skipped} {NAME} runs scheduled {first:%Y-%m-%d %H:%M:%S}–"
    assert note in (artifact.description or ""), artifact.description
    assert note in str(artifact.data)
    logs = deployed.run_logs(kept.id, note)
    assert logs.count(note) == 1, logs
