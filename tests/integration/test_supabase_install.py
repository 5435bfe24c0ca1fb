"""`taskflow-jobs migrate` into an existing TaskFlow on Supabase: the jobs schema, its
functions and triggers are added, nothing else changes, the API roles cannot use them,
and the triggers fire when those roles write what the app lets them write.
Runs on the embedded PostgreSQL 18 and on Debian's PostgreSQL 15."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from taskflow_jobs import db
from taskflow_jobs.db.schema_dump import dump_schema
from tests.support.databases import create_database, drop_database
from tests.support.debian import PG15_BIN

SUPPORT = Path(__file__).parents[1] / "support"
EARLIER_0001 = Path(__file__).parent / "fixtures" / "0001_taskflow_schema.earlier.sql"
ADA = "00000000-0000-0000-0000-0000000000a1"
BOB = "00000000-0000-0000-0000-0000000000b2"
API_ROLES = ("anon", "authenticated")
# what migrate adds outside the jobs schema on a Supabase database with profiles and tasks
ADDED_TRIGGERS = {
    "enqueue_welcome_email on auth.users",
    "enqueue_task_assigned_on_insert on tasks",
    "enqueue_task_assigned_on_update on tasks",
}
ADDED_TABLES = ("taskflow_migrations", "audit_log", "daily_stats", "notification_preferences")
# the one object added to an app table: notifications find their user by address
ADDED_INDEXES = ("profiles_email_lower_idx",)


def snapshot(url: str) -> set[str]:
    with db.connect(url) as conn:
        rows = conn.execute((SUPPORT / "catalog_snapshot.sql").read_text())
        return {r["line"] for r in rows}


@pytest.fixture
def supabase_url(supabase_blank_url: str) -> str:
    with db.connect(supabase_blank_url, autocommit=True) as conn:
        conn.execute((SUPPORT / "supabase_app.sql").read_text())
    return supabase_blank_url


def is_new_table_object(line: str) -> bool:
    return any(f"public.{t}" in line or f" {t}_" in line for t in ADDED_TABLES) or any(
        f" {i} " in line or f"public.{i} " in line or f"public.{i}." in line for i in ADDED_INDEXES
    )


def test_migrate_adds_jobs_and_triggers_and_changes_nothing_else(supabase_url: str) -> None:
    before = snapshot(supabase_url)
    # the CLI, as an operator runs it
    result = subprocess.run(
        [str(Path(sys.executable).parent / "taskflow-jobs"), "migrate"],
        env={**os.environ, "DATABASE_URL": supabase_url},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    after = snapshot(supabase_url)

    assert before - after == set()  # nothing changed or removed
    added = after - before
    triggers = {line.split(" enabled=")[0].removeprefix("trigger ") for line in added
                if line.startswith("trigger ")}  # fmt: skip
    assert triggers == ADDED_TRIGGERS
    others = {line for line in added if not line.startswith("trigger ")}
    assert {line for line in others if not is_new_table_object(line)} == set()
    # the tables it had to create are not exposed to the Data API
    for table in ("audit_log", "daily_stats", "taskflow_migrations", "notification_preferences"):
        (line,) = [x for x in added if x.startswith(f"relation public.{table} kind=r")]
        assert " rls=t " in line and "anon" not in line and "authenticated" not in line
    with db.connect(supabase_url) as conn:
        assert conn.execute("SELECT count(*) AS n FROM jobs.messages").fetchone()["n"] == 0
    assert db.migrate(supabase_url) == []


@pytest.mark.parametrize("role", API_ROLES)
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT jobs.send('email_notifications', '{\"type\": \"welcome_email\"}')",
        "SELECT count(*) FROM jobs.messages",
        "SELECT * FROM jobs.metrics()",
        "SELECT * FROM jobs.claim('email_notifications', 10, interval '1 minute')",
        "DELETE FROM jobs.dead_letters",
        "SELECT count(*) FROM public.taskflow_migrations",
    ],
)
def test_api_roles_cannot_use_the_jobs_schema(supabase_url: str, role: str, statement: str) -> None:
    db.migrate(supabase_url)
    with db.connect(supabase_url) as conn:
        conn.execute(f"SET ROLE {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(statement)


def test_jobs_functions_have_no_grant_to_public_or_api_roles(supabase_url: str) -> None:
    db.migrate(supabase_url)
    with db.connect(supabase_url) as conn:
        rows = conn.execute(
            "SELECT p.oid::regprocedure::text AS f, r.rolname,"
            " has_function_privilege(r.rolname, p.oid, 'EXECUTE') AS can"
            " FROM pg_proc p CROSS JOIN pg_roles r"
            " WHERE p.pronamespace = 'jobs'::regnamespace AND r.rolname = ANY(%s)",
            (list(API_ROLES),),
        ).fetchall()
        assert rows and not [r for r in rows if r["can"]]
        for role in API_ROLES:
            assert not conn.execute(
                "SELECT has_schema_privilege(%s, 'jobs', 'USAGE') AS u", (role,)
            ).fetchone()["u"]


def claims(conn: psycopg.Connection, role: str, sub: str) -> None:
    conn.execute(f"SET ROLE {role}")
    conn.execute(
        "SELECT set_config('request.jwt.claims', %s, false)",
        (json.dumps({"sub": sub, "role": role}),),
    )


def payloads(url: str) -> list[dict]:
    with db.connect(url) as conn:
        rows = conn.execute("SELECT payload FROM jobs.messages ORDER BY id").fetchall()
        return [r["payload"] for r in rows]


def test_triggers_fire_when_api_roles_write_what_the_app_allows(supabase_url: str) -> None:
    db.migrate(supabase_url)
    with db.connect(supabase_url, autocommit=True) as conn:
        # a signup, as Supabase Auth writes it
        conn.execute("SET ROLE supabase_auth_admin")
        conn.execute(
            "INSERT INTO auth.users (id, aud, role, email, raw_user_meta_data, created_at)"
            " VALUES (%s, 'authenticated', 'authenticated', 'bob@example.com',"
            ' \'{"full_name": "Bob"}\', now())',
            (BOB,),
        )
        conn.execute("RESET ROLE")
        # the app's own signup trigger still makes the profile
        profile = conn.execute("SELECT full_name FROM public.profiles WHERE id = %s", (BOB,))
        assert profile.fetchone()["full_name"] == "Bob"

        # Ada, signed in, creates a task for Bob, then takes it back, then gives it again
        claims(conn, "authenticated", ADA)
        task = conn.execute(
            "INSERT INTO public.tasks (title, assignee_id, created_by, priority)"
            " VALUES ('Write docs', %s, %s, 1) RETURNING id",
            (BOB, ADA),
        ).fetchone()["id"]
        conn.execute("UPDATE public.tasks SET assignee_id = %s WHERE id = %s", (ADA, task))
        conn.execute("UPDATE public.tasks SET assignee_id = %s WHERE id = %s", (BOB, task))
        # ... and cannot see the queue her writes fed
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM jobs.messages")
        conn.execute("RESET ROLE")

    sent = payloads(supabase_url)
    assert sent[0] == {"type": "welcome_email", "user_id": BOB, "email": "bob@example.com",
                       "name": "Bob"}  # fmt: skip
    assigned = [p for p in sent[1:] if p["type"] == "task_assigned"]
    assert [(p["task_id"], p["assignee_id"], p["assigner_id"]) for p in assigned] == [
        (task, BOB, ADA), (task, ADA, ADA), (task, BOB, ADA)
    ]  # fmt: skip
    assert len(sent) == 4


def test_migrate_refuses_an_app_table_without_the_columns_it_reads(
    blank_database_url: str,
) -> None:
    with db.connect(blank_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.tasks (id bigint PRIMARY KEY, name text)")
    with pytest.raises(psycopg.errors.RaiseException, match=r"public\.tasks|tasks exists"):
        db.migrate(blank_database_url)
    with db.connect(blank_database_url) as conn:
        assert conn.execute("SELECT to_regnamespace('jobs') AS j").fetchone()["j"] is None
        versions = conn.execute("SELECT count(*) AS n FROM public.taskflow_migrations")
        assert versions.fetchone()["n"] == 0


def own_pg_dump(url: str) -> Path | None:
    """The server's own pg_dump for Debian's 15 (None: the embedded server's)."""
    with db.connect(url) as conn:
        version = int(conn.execute("SHOW server_version_num").fetchone()["server_version_num"])
    return PG15_BIN / "pg_dump" if version // 10000 == 15 else None


def test_database_migrated_by_the_earlier_0001_stays_valid(
    server_admin_url: str, tmp_path: Path
) -> None:
    """0001 now creates each app table only where absent; a database the earlier text ran
    on is up to date: migrate applies nothing, records the new checksum, and the schema is
    the one a fresh database gets (on a cluster without Supabase's roles: where they exist,
    the tables the earlier text created stay as they are, without row level security)."""
    current = db.discover_migrations()
    for m in current:
        shutil.copy(EARLIER_0001 if m.version == 1 else m.path, tmp_path / m.path.name)
    names = (f"earlier_{os.getpid()}", f"fresh_{os.getpid()}")
    earlier, fresh = (create_database(server_admin_url, name) for name in names)
    try:
        db.migrate(earlier, db.discover_migrations(tmp_path))
        assert db.migrate(earlier) == []
        with db.connect(earlier) as conn:
            recorded = conn.execute(
                "SELECT checksum FROM public.taskflow_migrations WHERE version = 1"
            ).fetchone()["checksum"]
        assert recorded == current[0].checksum
        db.migrate(fresh)
        pg_dump = own_pg_dump(fresh)
        assert dump_schema(earlier, pg_dump) == dump_schema(fresh, pg_dump)
    finally:
        for name in names:
            drop_database(server_admin_url, name)
