"""The database commands as a user runs them: migrate, enqueue, psql; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "taskflow-jobs")


def run(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "PREFECT_"))}
    return subprocess.run(
        [CLI, *args],
        env={**base, "DATABASE_URL": database_url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_is_a_no_op_on_a_migrated_database(database_url: str) -> None:
    done = run(database_url, "migrate")
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stdout


def test_enqueue_and_psql(database_url: str) -> None:
    data = json.dumps({"to": "ops@example.com", "subject": "Hi", "body": "Hello"})
    first = run(database_url, "enqueue", "notification", "-d", data, "--key", "k1")
    again = run(database_url, "enqueue", "notification", "-d", data, "--key", "k1")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["id"] == json.loads(again.stdout)["id"]
    count = run(database_url, "psql", "-tAc", "select count(*) from jobs.messages")
    assert count.returncode == 0, count.stderr
    assert count.stdout.strip() == "1"


BAD_ADDRESS = '{"to": "not-an-email", "subject": "Hi", "body": "x"}'


def test_bad_input_is_one_clear_line(database_url: str) -> None:
    cases = [
        (("enqueue", "notification", "-d", "{not json"), "--data is not valid JSON"),
        (("enqueue", "notification", "-d", "[1]"), "--data must be a JSON object"),
        (("enqueue", "x", "--queue", "nope"), 'unknown queue "nope"'),
        (("enqueue", "fax"), "type: unknown message type 'fax'"),
        (("enqueue", "notification", "-d", BAD_ADDRESS), "to: value is not a valid email address"),
    ]
    for args, message in cases:
        done = run(database_url, *args)
        assert done.returncode == 1, args
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    count = run(database_url, "psql", "-tAc", "select count(*) from jobs.messages")
    assert count.stdout.strip() == "0", "a refused job is not enqueued"
    bad_port = run(database_url, "migrate", SMTP_PORT="many")
    assert bad_port.returncode == 1 and "SMTP_PORT" in bad_port.stderr
    secret = "postgresql://app:hunter2@127.0.0.1:1/x"
    down = run(secret, "migrate")
    assert down.returncode == 1 and "cannot connect" in down.stderr
    assert "hunter2" not in down.stderr
