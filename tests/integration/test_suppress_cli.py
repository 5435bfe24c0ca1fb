"""`taskflow-jobs suppress add|remove|list` as an operator runs it, and `status` shows skips."""

from __future__ import annotations

import json

import psycopg

from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from tests.integration.test_db_cli import run


def test_add_list_remove(database_url: str, conn: psycopg.Connection) -> None:
    added = run(database_url, "suppress", "add", "Ops@Example.com", "b@example.com",
                "--reason", "asked by phone")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {
        "added": ["Ops@Example.com", "b@example.com"],
        "already_suppressed": [],
    }
    again = run(database_url, "suppress", "add", "ops@example.com")  # any case is the same one
    assert json.loads(again.stdout) == {"added": [], "already_suppressed": ["ops@example.com"]}

    listed = run(database_url, "suppress", "list", "--json")
    rows = {r["email"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"Ops@Example.com", "b@example.com"}
    assert rows["b@example.com"]["reason"] == "asked by phone"
    assert rows["b@example.com"]["source"] == "cli"
    table = run(database_url, "suppress", "list", "--match", "ops")
    assert "Ops@Example.com" in table.stdout and "b@example.com" not in table.stdout

    removed = run(database_url, "suppress", "remove", "OPS@example.com", "nobody@example.com")
    assert removed.returncode == 1
    assert json.loads(removed.stdout) == {
        "removed": ["OPS@example.com"],
        "not_found": ["nobody@example.com"],
    }
    assert [r["email"] for r in conn.execute("SELECT email FROM jobs.suppressions")] == [
        "b@example.com"
    ]


def test_bad_input_is_one_line(database_url: str) -> None:
    bad = run(database_url, "suppress", "add", "not-an-address")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: not an email address: 'not-an-address'"
    empty = run(database_url, "suppress", "add", "a@example.com", "--reason", " ")
    assert empty.returncode == 1 and "--reason" in empty.stderr


def test_status_counts_skipped_messages(database_url: str, conn: psycopg.Connection) -> None:
    first = queue.send(conn, EMAIL_QUEUE, {"type": "notification"})
    batch = queue.claim(conn, EMAIL_QUEUE, 10, 60)
    failure = queue.Failure(first, "suppressed: manual (via cli)")
    assert queue.skip_many(conn, batch.token, [failure]) == [first]
    status = run(database_url, "status", "--json")
    assert status.returncode == 0, status.stderr
    skipped = json.loads(status.stdout)["skipped_last_day"]
    assert skipped == [{"type": "notification", "why": "suppressed", "count": 1}]
    shown = run(database_url, "status")
    assert "Skipped in the last day" in shown.stdout
