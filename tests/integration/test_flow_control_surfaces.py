"""Where an operator meets flow control: `enqueue` takes a priority,
`queue pause|resume` works (and holds without Prefect), `status` and the health check
show a pause and alert once when it outlives HEALTH_MAX_PAUSE."""

from __future__ import annotations

import datetime as dt
import json

import psycopg

from taskflow_jobs.jobs import pauses, queue
from taskflow_jobs.monitoring import health, incidents, status
from taskflow_jobs.net import free_port
from taskflow_jobs.settings import EMAIL_QUEUE, load_settings
from tests.integration.test_db_cli import run

NOTE = {"to": "ada@example.com", "subject": "Newsletter", "body": "Hello."}


def lanes(conn: psycopg.Connection) -> list[tuple[str, int]]:
    rows = conn.execute("SELECT payload ->> 'type' AS t, priority FROM jobs.messages ORDER BY id")
    return [(r["t"], r["priority"]) for r in rows]


def test_enqueue_takes_a_priority(database_url: str, conn: psycopg.Connection) -> None:
    done = run(
        database_url, "enqueue", "notification", "-d", json.dumps(NOTE), "--priority", "bulk"
    )
    assert done.returncode == 0, done.stderr
    assert lanes(conn) == [("notification", 1)]
    bad = run(database_url, "enqueue", "notification", "-d", json.dumps(NOTE), "--priority", "x")
    assert bad.returncode == 1 and "--priority" in bad.stderr
    assert len(lanes(conn)) == 1


def test_pause_and_resume_from_the_cli_hold_without_prefect(
    database_url: str, conn: psycopg.Connection
) -> None:
    nowhere = {"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    paused = run(database_url, "queue", "pause", "--type", "notification", **nowhere)
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["type"] == "notification"
    assert "Prefect unreachable" in paused.stderr and "holds in PostgreSQL" in paused.stderr
    assert [(p.message_type, p.source) for p in pauses.pauses(conn)] == [("notification", "cli")]

    queue.send(conn, EMAIL_QUEUE, {"type": "notification", **NOTE})
    assert queue.claim(conn, EMAIL_QUEUE, 10, 30).ids == []

    shown = run(database_url, "status", **nowhere)
    assert shown.returncode == 0, shown.stderr
    assert "PAUSED" in shown.stdout and "notification" in shown.stdout

    resumed = run(database_url, "queue", "resume", "--type", "notification", **nowhere)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["types"] == ["notification"]
    assert len(queue.claim(conn, EMAIL_QUEUE, 10, 30)) == 1


def test_pause_needs_a_real_type(database_url: str) -> None:
    done = run(database_url, "queue", "pause", "--type", "*")
    assert done.returncode == 1 and "--type" in done.stderr


def test_status_shows_the_pause_and_its_duration(database_url: str, conn) -> None:
    pauses.pause(conn, EMAIL_QUEUE)
    conn.execute("UPDATE jobs.pauses SET paused_at = now() - interval '10 minutes'")
    (shown,) = status.database_snapshot(database_url).to_json()["pauses"]
    assert shown["type"] == "*" and 590 < shown["paused_for_seconds"] < 700


def test_the_health_check_alerts_once_when_a_pause_outlives_the_setting(
    database_url: str, conn
) -> None:
    settings = load_settings(database_url=database_url, health_max_pause=1800)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    pauses.pause(conn, EMAIL_QUEUE, "notification")
    report = health.run_checks(settings, since, include_flow_runs=False)
    assert report.healthy, "a young pause is shown, not alerted"
    assert any(r["check"].startswith("paused: notification") for r in report.table())

    conn.execute("UPDATE jobs.pauses SET paused_at = now() - interval '2 hours'")
    state = incidents.HealthState()
    alerts = []
    for _ in range(3):  # three hourly checks
        report = health.run_checks(settings, since, include_flow_runs=False)
        state, transition = incidents.advance(state, report.problems, dt.datetime.now(dt.UTC))
        alerts += transition.opened
    assert [a.key for a in alerts] == [f"queue_paused:{EMAIL_QUEUE}:notification"]
    assert "paused for 2.0 h" in alerts[0].summary

    pauses.resume(conn, EMAIL_QUEUE)
    report = health.run_checks(settings, since, include_flow_runs=False)
    _, transition = incidents.advance(state, report.problems, dt.datetime.now(dt.UTC))
    assert [i.key for i in transition.resolved] == [f"queue_paused:{EMAIL_QUEUE}:notification"]
