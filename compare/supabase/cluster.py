"""A throwaway PostgreSQL 15 cluster with pg_cron, holding the Supabase design's database.

pg_cron comes from Debian (`postgresql-15-cron`), which builds it for Debian's PostgreSQL 15
only: the embedded PostgreSQL 18 of taskflow-jobs cannot load it. This module installs the
two packages when they are missing (`apt-get`, as root), runs `initdb` in a temporary
directory (as the `postgres` system user when we are root: initdb refuses root), starts the
server on a Unix socket only, and installs pgmq (the SQL shipped in the PyPI `pgmq` wheel),
the design's schema and triggers, the pg_net stand-in and the pg_cron jobs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_CRON_LIB = Path("/usr/lib/postgresql/15/lib/pg_cron.so")
DEBIAN_PACKAGES = ("postgresql-15", "postgresql-15-cron")
DATABASE = "supabase"
HERE = Path(__file__).resolve().parent


def pgmq_sql() -> Path:
    # deferred: the wheel is only the carrier of pgmq.sql; importing it is not needed else
    import pgmq

    return Path(pgmq.__file__).resolve().parent / "sql" / "pgmq.sql"


def ensure_debian_packages() -> None:
    """Install Debian's PostgreSQL 15 and pg_cron when they are missing."""
    if (PG_BIN / "postgres").exists() and PG_CRON_LIB.exists():
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"needs Debian packages {' '.join(DEBIAN_PACKAGES)} (root to install)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES], check=True, env=env)


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class Cluster:
    root: Path
    port: int

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"


def _configure(pgdata: Path, cluster: Cluster) -> None:
    settings = {
        "listen_addresses": "''",
        "port": str(cluster.port),
        "unix_socket_directories": f"'{cluster.socket_dir}'",
        "shared_preload_libraries": "'pg_cron'",
        "cron.database_name": f"'{DATABASE}'",
        "cron.use_background_workers": "on",
        "max_worker_processes": "16",
        "fsync": "off",  # a scratch cluster: durability across a power cut is not measured
        "max_connections": "50",
    }
    with (pgdata / "postgresql.conf").open("a") as conf:
        for key, value in settings.items():
            conf.write(f"{key} = {value}\n")


def _install(cluster: Cluster, function_url: str) -> None:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(pgmq_sql().read_text())
        conn.execute((HERE / "schema.sql").read_text())
        conn.execute((HERE / "net.sql").read_text())
        conn.execute("CREATE EXTENSION pg_cron")
        conn.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET app.edge_function_url = {}").format(
                psycopg.sql.Identifier(DATABASE), psycopg.sql.Literal(function_url)
            )
        )
    # a new session sees the database setting the cron jobs read
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute((HERE / "cron.sql").read_text())


@contextmanager
def pg15_cluster(port: int, function_url: str) -> Iterator[Cluster]:
    """Start the cluster, install the design, yield it; stop and delete it afterwards."""
    ensure_debian_packages()
    root = Path(tempfile.mkdtemp(prefix="compare-supabase-", dir="/tmp"))
    cluster = Cluster(root, port)
    pgdata = root / "data"
    cluster.socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(cluster.socket_dir, "postgres", "postgres")
    log = root / "postgres.log"
    started = False
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),  # fmt: skip
            check=True,
            capture_output=True,
        )
        _configure(pgdata, cluster)
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w", "start"]
            ),  # fmt: skip
            check=True,
            capture_output=True,
        )
        started = True
        _wait_ready(cluster)
        _install(cluster, function_url)
        yield cluster
    finally:
        if started:
            subprocess.run(
                _as_postgres(
                    [str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"]
                ),  # fmt: skip
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(cluster: Cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.url("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
