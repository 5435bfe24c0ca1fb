"""Supabase database webhooks, with payloads built the way Supabase builds them.

`supabase_functions.http_request` sends jsonb_build_object('old_record', OLD, 'record',
NEW, 'type', TG_OP, 'table', TG_TABLE_NAME, 'schema', TG_TABLE_SCHEMA); a trigger of the
same shape records those bodies here, and the test POSTs them to the receiver.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.support.receiver import Receiver, count

CAPTURE = """
CREATE TABLE public.webhook_outbox (id serial PRIMARY KEY, body jsonb NOT NULL);
CREATE FUNCTION public.capture_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.webhook_outbox (body) VALUES (jsonb_build_object(
        'old_record', OLD, 'record', NEW, 'type', TG_OP,
        'table', TG_TABLE_NAME, 'schema', TG_TABLE_SCHEMA));
    RETURN NULL;
END $$;
CREATE TRIGGER supabase_webhook AFTER INSERT OR UPDATE OR DELETE ON auth.users
    FOR EACH ROW EXECUTE FUNCTION public.capture_webhook();
CREATE TRIGGER supabase_webhook AFTER INSERT OR UPDATE OR DELETE ON public.tasks
    FOR EACH ROW EXECUTE FUNCTION public.capture_webhook();
"""

TRIGGERS_OFF = """
ALTER TABLE auth.users DISABLE TRIGGER enqueue_welcome_email;
ALTER TABLE public.tasks DISABLE TRIGGER enqueue_task_assigned_on_insert;
ALTER TABLE public.tasks DISABLE TRIGGER enqueue_task_assigned_on_update;
"""


@pytest.fixture
def supabase(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute(CAPTURE)
    return conn


def captured(conn: psycopg.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT body FROM public.webhook_outbox ORDER BY id").fetchall()
    conn.execute("DELETE FROM public.webhook_outbox")
    return [r["body"] for r in rows]


def signup(conn: psycopg.Connection, email: str, name: str | None) -> uuid.UUID:
    meta = {"full_name": name} if name else {}
    return conn.execute(
        "INSERT INTO auth.users (email, raw_user_meta_data) VALUES (%s, %s) RETURNING id",
        (email, Jsonb(meta)),
    ).fetchone()["id"]


def messages(conn: psycopg.Connection, kind: str) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT id, payload FROM jobs.messages WHERE payload->>'type' = %s ORDER BY id", (kind,)
    ).fetchall()


def deliver(receiver: Receiver, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answers = []
    for body in bodies:
        response = receiver.post("/webhooks/supabase", body)
        assert response.status_code in (200, 202), response.text
        answers.append(response.json())
    return answers


def test_signup_through_trigger_and_webhook_is_one_job(receiver: Receiver, supabase) -> None:  # noqa: ANN001
    user = signup(supabase, "ada@example.com", "Ada Lovelace")
    [from_trigger] = messages(supabase, "welcome_email")
    [answer] = deliver(receiver, captured(supabase))
    assert answer == {
        "status": "accepted",
        "job_id": from_trigger["id"],
        "type": "welcome_email",
        "duplicate": True,
    }
    assert len(messages(supabase, "welcome_email")) == 1
    assert from_trigger["payload"]["user_id"] == str(user)


def test_assignments_through_trigger_and_webhook_are_one_job_each(
    receiver: Receiver,
    supabase,  # noqa: ANN001
) -> None:
    boss, ann, bob = (signup(supabase, f"{n}@example.com", n) for n in ("boss", "ann", "bob"))
    supabase.execute("DELETE FROM jobs.messages")
    captured(supabase)
    task = supabase.execute(
        "INSERT INTO public.tasks (title, assignee_id, created_by) VALUES ('Ship', %s, %s)"
        " RETURNING id",
        (ann, boss),
    ).fetchone()["id"]
    for sql, args in [
        ("UPDATE public.tasks SET assignee_id = %s WHERE id = %s", (bob, task)),
        ("UPDATE public.tasks SET status = 'in_progress' WHERE id = %s", (task,)),
        ("UPDATE public.tasks SET assignee_id = NULL WHERE id = %s", (task,)),
        ("UPDATE public.tasks SET assignee_id = %s WHERE id = %s", (ann, task)),
    ]:
        supabase.execute(sql, args)
    from_triggers = [m["id"] for m in messages(supabase, "task_assigned")]
    assert len(from_triggers) == 3  # ann, bob, ann again
    answers = deliver(receiver, captured(supabase))
    assert [a["status"] for a in answers] == [
        "accepted",
        "accepted",
        "ignored",
        "ignored",
        "accepted",
    ]
    assert [a["job_id"] for a in answers if a["status"] == "accepted"] == from_triggers
    assert all(a["duplicate"] for a in answers if a["status"] == "accepted")
    assert [m["id"] for m in messages(supabase, "task_assigned")] == from_triggers


def test_webhooks_alone_enqueue_what_the_triggers_would(receiver: Receiver, supabase) -> None:  # noqa: ANN001
    supabase.execute(TRIGGERS_OFF)
    user = signup(supabase, "grace@example.com", "Grace Hopper")
    boss = signup(supabase, "boss@example.com", None)
    supabase.execute(
        "INSERT INTO public.tasks (title, assignee_id, created_by) VALUES ('Compile', %s, %s)",
        (user, boss),
    )
    assert count(supabase, "SELECT count(*) FROM jobs.messages") == 0
    bodies = captured(supabase)
    first = deliver(receiver, bodies)
    assert [(a["type"], a["duplicate"]) for a in first] == [
        ("welcome_email", False),
        ("welcome_email", False),
        ("task_assigned", False),
    ]
    [grace, boss_mail] = messages(supabase, "welcome_email")
    assert grace["payload"] == {
        "type": "welcome_email",
        "user_id": str(user),
        "email": "grace@example.com",
        "name": "Grace Hopper",
    }
    assert boss_mail["payload"]["name"] is None
    [assigned] = messages(supabase, "task_assigned")
    assert assigned["payload"]["assigner_id"] == str(boss)
    assert assigned["payload"]["task_title"] == "Compile"
    # Supabase does not retry, but other senders do: a retried delivery is the same job
    again = deliver(receiver, bodies)
    assert [a["job_id"] for a in again] == [a["job_id"] for a in first]
    assert all(a["duplicate"] for a in again)
    assert count(supabase, "SELECT count(*) FROM jobs.messages") == 3


def test_turning_triggers_off_later_does_not_resend(receiver: Receiver, supabase) -> None:  # noqa: ANN001
    """The key survives the switch from triggers to webhooks: the same change is one email."""
    signup(supabase, "linus@example.com", "Linus")
    bodies = captured(supabase)
    supabase.execute(TRIGGERS_OFF)
    supabase.execute("DELETE FROM jobs.messages")  # the dispatcher sent and archived it, say
    [answer] = deliver(receiver, bodies)
    assert answer["duplicate"] is True
    assert count(supabase, "SELECT count(*) FROM jobs.messages") == 0
