"""The migrations runner: numbered SQL files, applied once each, in order, with checksums."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from taskflow_jobs.db.connect import connect
from taskflow_jobs.sql import MIGRATIONS_DIR

log = logging.getLogger(__name__)

# Any constant works: it only has to be the same for every `migrate` process.
MIGRATION_LOCK_KEY = 7_310_221_544


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        if not number.isdigit() or not name:
            raise RuntimeError(f"migration file name must be NNNN_name.sql: {path.name}")
        found.append(Migration(int(number), name, path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a version number")
    return found


# Earlier texts of migration files whose current text does the same on the database the
# earlier one ran on: such a database is up to date, and its ledger takes the new checksum.
SUPERSEDED_CHECKSUMS: dict[str, frozenset[str]] = {
    # 0001 creates each app table only where it is absent (installs into an existing app)
    "0001_taskflow_schema.sql": frozenset(
        {"e1aa4d8929c47cce69390ddd89cdcbeff87cad8829ea32532edd523bacef2eb7"}
    ),
}


class MigrationChanged(RuntimeError):
    """An applied migration's file was edited afterwards: write a new migration instead."""


def migrate(url: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply pending migrations in order, each in its own transaction, under an advisory lock.

    Safe to run concurrently (the second caller waits, then finds nothing to do) and
    idempotent. Returns the migrations it applied.
    """
    migrations = discover_migrations() if migrations is None else migrations
    applied: list[Migration] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.taskflow_migrations ("
                " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                row["version"]: row["checksum"]
                for row in conn.execute("SELECT version, checksum FROM public.taskflow_migrations")
            }
            for migration in migrations:
                if migration.version in done:
                    recorded = done[migration.version]
                    if recorded != migration.checksum:
                        if recorded not in SUPERSEDED_CHECKSUMS.get(migration.path.name, ()):
                            raise MigrationChanged(
                                f"migration {migration.path.name} changed after it was applied"
                            )
                        conn.execute(
                            "UPDATE public.taskflow_migrations SET checksum = %s"
                            " WHERE version = %s",
                            (migration.checksum, migration.version),
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO public.taskflow_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.debug("applied migration %s", migration.path.name)
                applied.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied
