"""Migrations: ordered, recorded, idempotent, safe when run concurrently; schema.sql agrees."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from taskflow_jobs import db
from taskflow_jobs.db.schema_dump import dump_schema
from taskflow_jobs.sql import SCHEMA_FILE


@pytest.fixture
def empty_database_url(blank_database_url: str) -> str:
    """Each test here runs on the embedded PostgreSQL 18 and on Debian's PostgreSQL 15."""
    return blank_database_url


def applied_versions(url: str) -> list[int]:
    with db.connect(url) as conn:
        rows = conn.execute("SELECT version FROM public.taskflow_migrations ORDER BY version")
        return [r["version"] for r in rows]


def test_migrate_applies_all_in_order_then_nothing(empty_database_url: str) -> None:
    everything = db.discover_migrations()
    assert [m.version for m in db.migrate(empty_database_url)] == [m.version for m in everything]
    assert db.migrate(empty_database_url) == []
    assert applied_versions(empty_database_url) == [m.version for m in everything]


def test_two_concurrent_migrations_apply_each_file_once(empty_database_url: str) -> None:
    results: list[list[db.Migration]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(db.migrate(empty_database_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(len(r) for r in results) == [0, len(db.discover_migrations())]


def test_failing_migration_rolls_back_and_is_not_recorded(
    empty_database_url: str, tmp_path: Path
) -> None:
    for m in db.discover_migrations():
        shutil.copy(m.path, tmp_path / m.path.name)
    (tmp_path / "9999_broken.sql").write_text(
        "CREATE TABLE public.half_done (id int); SELECT no_such_function();"
    )
    with pytest.raises(Exception, match="no_such_function"):
        db.migrate(empty_database_url, db.discover_migrations(tmp_path))
    assert 9999 not in applied_versions(empty_database_url)
    with db.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('public.half_done') AS t").fetchone()["t"] is None


def test_edited_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    for m in db.discover_migrations():
        shutil.copy(m.path, tmp_path / m.path.name)
    db.migrate(empty_database_url, db.discover_migrations(tmp_path))
    first = sorted(tmp_path.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(db.MigrationChanged, match=first.name):
        db.migrate(empty_database_url, db.discover_migrations(tmp_path))


def test_schema_sql_matches_the_migrations(template_url: str) -> None:
    """If this fails after a new migration, run `make schema` and commit sql/schema.sql."""
    assert SCHEMA_FILE.read_text() == dump_schema(template_url)
