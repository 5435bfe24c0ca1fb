"""Debian packages the tests run for real (PostgreSQL 15, redis-server, nginx), and a
PostgreSQL 15 cluster of the test's own under a temp dir.

`make test` installs the packages first (target `debian-packages`); a test run without
make installs what is missing itself, so nothing depends on what was installed by hand.
PostgreSQL refuses to run as root: the cluster belongs to the `postgres` user the package
creates, and listens on a Unix socket only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = Path("/usr/bin/redis-server")
NGINX = Path("/usr/sbin/nginx")
# Docker's compose plugin is not on these machines; Debian's docker-compose (1.29, no
# engine needed for `config`) validates compose files against the Compose specification
DOCKER_COMPOSE = Path("/usr/bin/docker-compose")
_PACKAGES = {
    PG15_BIN / "initdb": "postgresql-15",
    REDIS_SERVER: "redis-server",
    NGINX: "nginx",
    DOCKER_COMPOSE: "docker-compose",
}


def ensure_installed(*binaries: Path) -> None:
    """apt-get install the packages of the binaries that are missing (once per call)."""
    missing = sorted({_PACKAGES[b] for b in binaries if not b.exists()})
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    subprocess.run(argv, check=True, env=env)


def _as_postgres(argv: list[str]) -> list[str]:
    return argv if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def postgres15_cluster(
    listen: str = "",
    hba: tuple[str, ...] = (),
    options: tuple[str, ...] = (),
    port: int = 5432,
) -> Iterator[str]:
    """A fresh PostgreSQL 15 cluster; yields its admin URL (database postgres, trust auth).

    `listen` are TCP addresses to listen on besides the socket, `hba` extra pg_hba.conf
    lines for them, `options` extra `-c name=value` server settings."""
    ensure_installed(PG15_BIN / "initdb")
    # not under pytest's tmp dir: that is root's (0700) and postgres could not enter it
    root = Path(tempfile.mkdtemp(prefix="taskflow-pg15-"))
    pgdata, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    try:
        subprocess.run(
            _as_postgres([str(PG15_BIN / "initdb"), "-D", str(pgdata), "-A", "trust",
                          "-U", "postgres", "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True,
        )  # fmt: skip
        if hba:
            with (pgdata / "pg_hba.conf").open("a") as conf:
                conf.write("\n".join(hba) + "\n")
        settings = " ".join(f"-c {o}" for o in options)
        options_arg = (
            f"-c listen_addresses='{listen}' -c port={port} -k {sockets} -c fsync=off {settings}"
        )
        subprocess.run(
            _as_postgres([str(PG15_BIN / "pg_ctl"), "-D", str(pgdata), "-o", options_arg,
                          "-l", str(root / "log"), "-w", "start"]),
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql://postgres@/postgres?host={sockets}&port={port}"
    finally:
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([str(PG15_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "immediate",
                              "-w", "stop"]),
                check=False, capture_output=True,
            )  # fmt: skip
            time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
