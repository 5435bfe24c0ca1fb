"""Bad jobs are dead-lettered with a clear reason (never dropped), and redrive delivers them;
the `dlq` commands show and redrive them."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from taskflow_jobs.cli import app
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE, get_settings
from tests.support.dispatch_helpers import drain, signup, state


def send(conn: psycopg.Connection, payload: dict) -> int:
    return queue.send(conn, EMAIL_QUEUE, payload)


def test_unknown_type_and_invalid_payloads_dead_letter_naming_the_field(
    conn: psycopg.Connection, make_settings
) -> None:
    unknown = send(conn, {"type": "sms_blast", "to": "x"})
    untyped = send(conn, {"email": "a@example.com"})
    bad_email = send(
        conn,
        {
            "type": "welcome_email",
            "user_id": "3f0e2b8e-5d1c-4e43-9d8a-2f6a1b7c9d10",
            "email": "nope",
        },
    )
    bad_task = send(conn, {"type": "task_assigned", "task_id": "seven", "task_title": "x"})

    stats = drain(make_settings())
    assert stats.summary()["dead-lettered"] == 4

    assert state(conn, unknown)["reason"].startswith("type: unknown message type 'sms_blast'")
    assert state(conn, untyped)["reason"].startswith("type: unknown message type missing")
    assert "email:" in state(conn, bad_email)["reason"]
    reason = state(conn, bad_task)["reason"]
    assert "task_id:" in reason and "assignee_id:" in reason


def test_task_assigned_without_a_profile_dead_letters_and_redrive_delivers_it(
    conn: psycopg.Connection, make_settings, data_dir: Path
) -> None:
    assigner, _ = signup(conn, "ann@example.com", "Ann")
    ghost = "6c1b7e0a-1f9e-4a8b-9a47-3e2f5d7c8b90"
    message_id = send(
        conn,
        {
            "type": "task_assigned",
            "task_id": 7,
            "task_title": "Review",
            "assignee_id": ghost,
            "assigner_id": assigner,
        },
    )
    settings = make_settings()
    drain(settings)
    dead = state(conn, message_id)
    assert dead["state"] == "dead"
    assert dead["reason"] == f"assignee_id: no profile {ghost} in public.profiles"

    # the profile appears (e.g. a late import); the operator redrives; it is delivered
    conn.execute(
        "INSERT INTO auth.users (id, email, raw_user_meta_data)"
        " VALUES (%s, 'ghost@example.com', '{\"full_name\": \"Casper\"}')",
        (ghost,),
    )
    assert queue.redrive(conn, ids=[message_id]) == [message_id]
    stats = drain(settings)
    assert stats.summary()["sent"] == 2  # Casper's welcome email and the task email
    done = state(conn, message_id)
    assert done["state"] == "archived"
    assert done["errors"][0]["error"] == dead["reason"], "history survives the redrive"
    outbox = sorted((data_dir / "outbox").glob("*.eml"))
    task_mail = [p.read_text() for p in outbox if f"-{message_id}.eml" in p.name]
    assert (
        len(task_mail) == 1 and "Casper" in task_mail[0] and "Ann assigned a task" in task_mail[0]
    )


@pytest.fixture
def cli(database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TASKFLOW_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    yield invoke
    get_settings.cache_clear()


def test_dlq_list_show_and_redrive(conn: psycopg.Connection, make_settings, cli) -> None:
    first = send(conn, {"type": "sms_blast"})
    second = send(conn, {"type": "fax"})
    third = send(conn, {"type": "welcome_email", "user_id": "x", "email": "a@example.com"})
    drain(make_settings())

    listed = cli("dlq", "list")
    assert listed.exit_code == 0, listed.output
    assert "sms_blast" in listed.output and "unknown message type" in listed.output

    as_json = json.loads(cli("dlq", "list", "--json").output)
    assert {row["id"] for row in as_json} == {first, second, third}
    assert all(row["errors"] for row in as_json)
    only_fax = json.loads(cli("dlq", "list", "--json", "--type", "fax").output)
    assert [row["id"] for row in only_fax] == [second]
    by_reason = json.loads(cli("dlq", "list", "--json", "--reason", "user_id").output)
    assert [row["id"] for row in by_reason] == [third]
    assert json.loads(cli("dlq", "list", "--json", "--since", "1h").output)
    assert cli("dlq", "list", "--since", "yesterday-ish").exit_code == 1

    shown = json.loads(cli("dlq", "show", str(first)).output)
    assert shown["payload"] == {"type": "sms_blast"} and shown["errors"][0]["attempt"] == 1
    assert cli("dlq", "show", "999999").exit_code == 1

    nothing = cli("dlq", "redrive")
    assert nothing.exit_code == 1 and "exactly one of" in nothing.output

    by_id = cli("dlq", "redrive", str(first), "424242")
    assert by_id.exit_code == 1  # one id was not a dead letter: say so
    assert json.loads(by_id.output) == {"redriven": 1, "ids": [first], "not_found": [424242]}
    assert state(conn, first)["state"] == "pending"

    by_type = json.loads(cli("dlq", "redrive", "--type", "fax").output)
    assert by_type["ids"] == [second]
    everything = json.loads(cli("dlq", "redrive", "--all").output)
    assert everything["ids"] == [third]
    assert queue.metrics(conn, EMAIL_QUEUE)[0].dead_letters == 0


def test_enqueue_then_dispatch_delivers_a_notification(
    conn: psycopg.Connection, cli, data_dir: Path, make_settings
) -> None:
    data = {"to": "ops@example.com", "subject": "Disk <80%", "body": "All good.\n\nReally."}
    result = cli("enqueue", "notification", "--data", json.dumps(data))
    assert result.exit_code == 0, result.output
    message_id = json.loads(result.output)["id"]

    assert drain(make_settings()).summary()["sent"] == 1
    (eml,) = (data_dir / "outbox").glob(f"*-{message_id}.eml")
    text = eml.read_text()
    assert "Subject: Disk <80%" in text
    assert "Disk &lt;80%" in text  # the HTML title / heading is escaped
