"""Without `consume`, email still leaves with nobody acting: the receiver notices email
that has waited EMAIL_SWEEP_AFTER seconds, its `taskflow.email.overdue` event triggers the
`email-dispatch` deployment, and the worker's run sends it. No schedule makes runs that
find nothing to do."""

from __future__ import annotations

import psycopg
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName

from taskflow_jobs import db
from tests.support.prefect_stack import Deployed
from tests.support.receiver import running_receiver
from tests.support.waiting import wait_for


def _archived(conn: psycopg.Connection, email: str) -> bool:
    return bool(
        conn.execute("SELECT 1 FROM jobs.archive WHERE payload->>'email' = %s", (email,)).fetchone()
    )


def test_overdue_email_is_swept_by_a_deployment_run(deployed: Deployed) -> None:
    with deployed.server.client(), get_client(sync_client=True) as client:
        sweeps = FlowFilter(name=FlowFilterName(any_=["email-dispatch"]))
        runs_before = {r.id for r in client.read_flow_runs(flow_filter=sweeps)}
    with db.connect(deployed.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (email, raw_user_meta_data)"
            " VALUES ('swept@example.com', '{\"full_name\": \"Swept\"}')"
        )
        with running_receiver(
            deployed.database_url,
            prefect_api_url=deployed.server.api_url,
            email_sweep_after=5,
            email_sweep_interval=1,
        ):
            try:
                wait_for(lambda: _archived(conn, "swept@example.com"), 120, "the swept email")
            except AssertionError:
                with deployed.server.client(), get_client(sync_client=True) as client:
                    runs = client.read_flow_runs(flow_filter=sweeps)
                    print("RUNS", [(r.name, r.state.name if r.state else None) for r in runs])
                    autos = client.read_automations()
                    print("AUTOMATIONS", [(a.name, a.enabled) for a in autos])
                print("WORKER", deployed.worker_log()[-3000:])
                raise
    with deployed.server.client(), get_client(sync_client=True) as client:
        new = [r for r in client.read_flow_runs(flow_filter=sweeps) if r.id not in runs_before]
    assert new, "an email-dispatch run sent it"
    assert all(r.deployment_id is not None for r in new)
    assert {r.state.name for r in new if r.state.is_final()} <= {"Completed"}
