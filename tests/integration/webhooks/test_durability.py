"""202 only after the commit; a database or Prefect outage is a 503 and leaves nothing behind."""

from __future__ import annotations

import logging
import time
import uuid

import psycopg
import pytest
from fastapi import FastAPI

from taskflow_jobs import db, net
from taskflow_jobs.webhooks.errors import RequestContext, install_error_handlers
from tests.support.databases import database_name
from tests.support.receiver import (
    Receiver,
    count,
    nothing_stored,
    running_receiver,
    serve_in_thread,
)

NOTE = {
    "type": "notification",
    "data": {"to": "ada@example.com", "subject": "Invoice", "body": "Attached."},
    "idempotency_key": "invoice-1",
}
SIGNUP = {
    "type": "INSERT",
    "table": "users",
    "schema": "auth",
    "record": {"id": str(uuid.uuid4()), "email": "new@example.com", "raw_user_meta_data": {}},
    "old_record": None,
}


def is_503(response) -> bool:  # noqa: ANN001
    return (
        response.status_code == 503
        and response.headers.get("retry-after", "").isdigit()
        and response.json()["error"]
    )


def set_connections(admin_url: str, name: str, allowed: bool) -> None:
    with db.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def retry_until_accepted(rx: Receiver, path: str, body: dict, within: float = 30.0):  # noqa: ANN201
    """What a sender does: retry (signed afresh) while the answer is 503."""
    deadline = time.monotonic() + within
    shift = 0
    while True:
        shift += 1  # an earlier timestamp each time, so no retry is a replay of another
        response = rx.post(path, body, timestamp=int(time.time()) - shift)
        if response.status_code != 503:
            assert response.status_code == 202, response.text
            return response
        assert time.monotonic() < deadline, "the receiver did not recover"
        time.sleep(0.5)


def test_database_down_is_503_and_the_retry_is_one_job(
    pg_admin_url: str, database_url: str
) -> None:
    name = database_name(database_url)
    with running_receiver(database_url, pool_timeout=1.0) as rx:
        assert rx.post("/api/notify", {**NOTE, "idempotency_key": "before"}).status_code == 202
        set_connections(pg_admin_url, name, allowed=False)
        try:
            down = rx.post("/api/notify", NOTE)
            assert is_503(down), down.text
            assert down.json()["error"] == "database unavailable"
            assert is_503(rx.post("/webhooks/supabase", SIGNUP))
            health = rx.get("/healthz")
            assert health.status_code == 503 and health.json()["database"] == "unreachable"
        finally:
            set_connections(pg_admin_url, name, allowed=True)
        retry = retry_until_accepted(rx, "/api/notify", NOTE)
        assert retry.json()["duplicate"] is False
        assert rx.post("/webhooks/supabase", SIGNUP).status_code == 202
        assert rx.get("/healthz").json()["database"] == "ok"
    with db.connect(database_url, autocommit=True) as conn:
        assert count(conn, "SELECT count(*) FROM jobs.messages") == 3


DIE_AFTER_INSERT = """
CREATE FUNCTION public.die() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
CREATE TRIGGER die AFTER INSERT ON jobs.messages FOR EACH ROW EXECUTE FUNCTION public.die();
"""
# fires at COMMIT: the transaction did everything, then the commit fails
FAIL_AT_COMMIT = """
CREATE FUNCTION public.refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'commit refused' USING ERRCODE = 'serialization_failure'; END $$;
CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON jobs.messages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_commit();
"""


@pytest.mark.parametrize(
    ("sabotage", "repair"),
    [
        (DIE_AFTER_INSERT, "DROP TRIGGER die ON jobs.messages"),
        (FAIL_AT_COMMIT, "DROP TRIGGER refuse_commit ON jobs.messages"),
    ],
    ids=["connection-dies-mid-transaction", "commit-fails"],
)
def test_failure_inside_the_transaction_leaves_nothing_half_written(
    receiver: Receiver, conn: psycopg.Connection, sabotage: str, repair: str
) -> None:
    conn.execute(sabotage)
    for path, body in (("/api/notify", NOTE), ("/webhooks/supabase", SIGNUP)):
        response = receiver.post(path, body)
        assert is_503(response), (path, response.status_code, response.text)
    assert nothing_stored(conn)  # no job, no idempotency key, no replay receipt
    conn.execute(repair)
    for path, body in (("/api/notify", NOTE), ("/webhooks/supabase", SIGNUP)):
        # the same signed request again (a sender's retry) is processed normally
        response = receiver.post(path, body)
        assert response.status_code == 202, response.text
        assert response.json()["duplicate"] is False
    assert count(conn, "SELECT count(*) FROM jobs.messages") == 2


def test_prefect_down_events_are_503_and_jobs_still_accepted(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"http://127.0.0.1:{net.free_port()}/api"
    caplog.set_level(logging.WARNING, logger="taskflow_jobs.webhooks")
    with running_receiver(database_url, prefect_api_url=nowhere) as rx:
        response = rx.post(
            "/api/events/report.requested", {"date": "2024-05-01"}, headers={"webhook-id": "r1"}
        )
        assert is_503(response) and response.json()["error"] == "prefect unavailable"
        job = rx.post("/api/notify", NOTE)
        assert job.status_code == 202  # the job is durable; the event is only a shortcut
        health = rx.get("/healthz").json()
        assert health == {"status": "degraded", "database": "ok", "prefect": "unreachable"}
        deadline = time.monotonic() + 10
        while "email-dispatch sweep will send them" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    with db.connect(database_url, autocommit=True) as conn:
        # the failed event left no receipt: its retry will be emitted, not called a duplicate
        assert (
            count(conn, "SELECT count(*) FROM jobs.webhook_receipts WHERE key LIKE 'event:%%'") == 0
        )


def test_unexpected_errors_become_a_logged_json_503(caplog: pytest.LogCaptureFixture) -> None:
    """The middleware every receiver route runs under, around a route with a bug."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContext)

    @app.get("/bug")
    async def bug() -> None:
        raise ZeroDivisionError("a bug")

    import httpx

    with serve_in_thread(app) as url:
        response = httpx.get(url + "/bug")
    assert response.status_code == 503 and response.headers["retry-after"]
    rid = response.headers["x-request-id"]
    assert response.json() == {
        "error": "temporarily unavailable",
        "detail": f"unexpected error, logged as request {rid}; retry later",
        "request_id": rid,
    }
    assert "ZeroDivisionError" in caplog.text and rid in caplog.text
