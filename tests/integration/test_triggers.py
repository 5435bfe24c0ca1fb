"""The database enqueues email jobs in the same transaction as the change."""

from __future__ import annotations

import uuid

import psycopg
from psycopg.types.json import Jsonb

from taskflow_jobs import db


def payloads(conn: psycopg.Connection) -> list[dict]:
    rows = conn.execute("SELECT payload FROM jobs.messages ORDER BY id").fetchall()
    return [r["payload"] for r in rows]


def signup(conn: psycopg.Connection, email: str, name: str | None = "Ada") -> uuid.UUID:
    meta = {"full_name": name} if name is not None else {}
    row = conn.execute(
        "INSERT INTO auth.users (email, raw_user_meta_data) VALUES (%s, %s) RETURNING id",
        (email, Jsonb(meta)),
    ).fetchone()
    return row["id"]


def test_signup_enqueues_welcome_email_and_creates_profile(conn: psycopg.Connection) -> None:
    user = signup(conn, "ada@example.com", "Ada Lovelace")
    assert payloads(conn) == [
        {
            "type": "welcome_email",
            "user_id": str(user),
            "email": "ada@example.com",
            "name": "Ada Lovelace",
        }
    ]
    profile = conn.execute("SELECT * FROM public.profiles WHERE id = %s", (user,)).fetchone()
    assert (profile["email"], profile["full_name"]) == ("ada@example.com", "Ada Lovelace")


def test_signup_without_name_still_enqueues(conn: psycopg.Connection) -> None:
    signup(conn, "anon@example.com", None)
    assert payloads(conn)[0]["name"] is None


def test_assignment_on_insert_and_on_change_only(conn: psycopg.Connection) -> None:
    boss, ann, bob = (signup(conn, f"{n}@example.com", n) for n in ("boss", "ann", "bob"))
    conn.execute("DELETE FROM jobs.messages")
    task = conn.execute(
        "INSERT INTO public.tasks (title, assignee_id, created_by) VALUES ('Ship it', %s, %s)"
        " RETURNING id",
        (ann, boss),
    ).fetchone()["id"]
    conn.execute("INSERT INTO public.tasks (title, created_by) VALUES ('Unassigned', %s)", (boss,))
    conn.execute("UPDATE public.tasks SET status = 'in_progress' WHERE id = %s", (task,))
    conn.execute("UPDATE public.tasks SET assignee_id = %s WHERE id = %s", (ann, task))
    conn.execute("UPDATE public.tasks SET assignee_id = %s WHERE id = %s", (bob, task))
    conn.execute("UPDATE public.tasks SET assignee_id = NULL WHERE id = %s", (task,))
    conn.execute("UPDATE public.tasks SET assignee_id = %s WHERE id = %s", (ann, task))
    got = payloads(conn)
    assert [p["assignee_id"] for p in got] == [str(ann), str(bob), str(ann)]
    assert got[0] == {
        "type": "task_assigned",
        "task_id": task,
        "task_title": "Ship it",
        "assignee_id": str(ann),
        "assigner_id": str(boss),
    }


def test_reassigning_back_sends_again(conn: psycopg.Connection) -> None:
    ann, bob = signup(conn, "ann@example.com"), signup(conn, "bob@example.com")
    conn.execute("DELETE FROM jobs.messages")
    with conn.transaction():
        task = conn.execute(
            "INSERT INTO public.tasks (title, assignee_id) VALUES ('t', %s) RETURNING id", (ann,)
        ).fetchone()["id"]
    for who in (bob, ann):
        with conn.transaction():
            conn.execute("UPDATE public.tasks SET assignee_id = %s WHERE id = %s", (who, task))
    assert [p["assignee_id"] for p in payloads(conn)] == [str(ann), str(bob), str(ann)]


def test_supabase_jwt_subject_is_the_assigner(conn: psycopg.Connection) -> None:
    ann, actor = signup(conn, "ann@example.com"), signup(conn, "lead@example.com")
    conn.execute("DELETE FROM jobs.messages")
    with conn.transaction():
        conn.execute(
            "SELECT set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{actor}"}}',)
        )
        conn.execute("INSERT INTO public.tasks (title, assignee_id) VALUES ('t', %s)", (ann,))
    assert payloads(conn)[0]["assigner_id"] == str(actor)


def test_rolled_back_transaction_leaves_no_message(database_url: str) -> None:
    with db.connect(database_url) as conn:
        user = signup(conn, "gone@example.com")
        conn.execute("INSERT INTO public.tasks (title, assignee_id) VALUES ('t', %s)", (user,))
        assert len(payloads(conn)) == 2
        conn.rollback()
        assert payloads(conn) == []
        assert conn.execute("SELECT count(*) AS n FROM auth.users").fetchone()["n"] == 0


def test_completed_at_follows_status(conn: psycopg.Connection) -> None:
    task = conn.execute("INSERT INTO public.tasks (title) VALUES ('t') RETURNING id").fetchone()[
        "id"
    ]
    conn.execute("UPDATE public.tasks SET status = 'completed' WHERE id = %s", (task,))
    row = conn.execute("SELECT completed_at FROM public.tasks WHERE id = %s", (task,)).fetchone()
    assert row["completed_at"] is not None
    conn.execute("UPDATE public.tasks SET status = 'todo' WHERE id = %s", (task,))
    row = conn.execute("SELECT completed_at FROM public.tasks WHERE id = %s", (task,)).fetchone()
    assert row["completed_at"] is None
