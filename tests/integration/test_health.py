"""The health checks against a real PostgreSQL (the Prefect flow-run checks are in e2e)."""

from __future__ import annotations

import datetime as dt

from taskflow_jobs.jobs import queue
from taskflow_jobs.monitoring import health
from taskflow_jobs.net import free_port
from taskflow_jobs.settings import EMAIL_QUEUE, load_settings

NOW = dt.datetime.now(dt.UTC)


def settings(url: str, **overrides):
    return load_settings(database_url=url, **overrides)


def problems(report) -> dict[str, str]:
    return {p.key: p.summary for p in report.problems}


def test_a_healthy_system_has_no_problems_and_a_full_table(database_url: str) -> None:
    report = health.run_checks(
        settings(database_url), NOW - dt.timedelta(hours=1), include_flow_runs=False
    )
    assert report.healthy, report.problems
    names = [row["check"] for row in report.table()]
    assert names[:2] == ["database reachable", "database round trip"]
    assert f"queue {EMAIL_QUEUE} depth" in names
    assert "dead letters since last check" in names
    assert all(row["status"] == "ok" for row in report.table())


def test_queue_depth_and_waiting_time_over_their_thresholds(database_url: str, conn) -> None:
    for i in range(3):
        queue.send(conn, EMAIL_QUEUE, {"type": "welcome_email", "n": i})
    conn.execute("UPDATE jobs.messages SET enqueued_at = now() - interval '2 hours'")
    report = health.run_checks(
        settings(database_url, health_max_queue_depth=2, health_max_message_age=3600),
        NOW,
        include_flow_runs=False,
    )
    found = problems(report)
    assert set(found) == {f"queue_depth:{EMAIL_QUEUE}", f"queue_age:{EMAIL_QUEUE}"}
    assert "holds 3 messages (limit 2)" in found[f"queue_depth:{EMAIL_QUEUE}"]
    assert "waited 120 min" in found[f"queue_age:{EMAIL_QUEUE}"]


def test_dead_letters_count_only_since_the_last_check(database_url: str, conn) -> None:
    before = dt.datetime.now(dt.UTC)
    ids = [queue.send(conn, EMAIL_QUEUE, {"type": "welcome_email", "n": i}) for i in range(2)]
    batch = queue.claim(conn, EMAIL_QUEUE, 10, 60)
    for message_id in ids:
        queue.dead_letter(conn, batch.token, message_id, "permanent: mailbox does not exist")
    after = dt.datetime.now(dt.UTC)

    since_before = health.run_checks(settings(database_url), before, include_flow_runs=False)
    since_after = health.run_checks(settings(database_url), after, include_flow_runs=False)

    assert "2 message(s) dead-lettered" in problems(since_before)["dead_letters"]
    assert "dead_letters" not in problems(since_after)
    tolerant = health.run_checks(
        settings(database_url, health_max_new_dead_letters=5), before, include_flow_runs=False
    )
    assert tolerant.healthy


def test_an_unreachable_database_is_a_problem_not_a_crash(tmp_path) -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{free_port()}/taskflow?connect_timeout=2"
    report = health.run_checks(settings(url), NOW, include_flow_runs=False)
    found = problems(report)
    assert list(found) == ["database_unreachable"]
    assert "hunter2" not in found["database_unreachable"]
    assert report.table() == [
        {"check": "database reachable", "value": "no", "threshold": "yes", "status": "PROBLEM"}
    ]


def test_a_slow_database_is_a_problem(database_url: str) -> None:
    report = health.run_checks(
        settings(database_url, health_max_db_latency_ms=0.0001), NOW, include_flow_runs=False
    )
    assert "database_slow" in problems(report)
