"""Prefect's self-hosted HA mode on this machine, for tests/e2e/test_ha.py and `make ha`.

PostgreSQL (the session's embedded cluster), Debian's redis-server, `prefect server
database upgrade`, two `prefect server start --no-services` replicas, one `prefect server
services start`, and Debian's nginx running deployments/nginx/prefect-api.conf in front.
The Redis settings are those of Prefect's self-hosting guide, the same as
deployments/compose.yaml. Every client (`taskflow-jobs deploy`, the worker, `consume`,
the receiver, the test itself) uses nginx's URL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from taskflow_jobs import errors, net
from taskflow_jobs.devstack import processes
from tests.support import nginx
from tests.support.databases import create_database, drop_database
from tests.support.debian import REDIS_SERVER, ensure_installed

PREFECT_DATABASE = "prefect_ha"
BIN = Path(sys.executable).parent


def redis_settings(port: int) -> dict[str, str]:
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
        "PREFECT_REDIS_MESSAGING_PORT": str(port),
        "PREFECT_REDIS_MESSAGING_DB": "0",
        "PREFECT_SERVER_DOCKET_URL": f"redis://127.0.0.1:{port}/1",
    }


@dataclass
class HAPrefect:
    api_url: str  # nginx's
    replicas: list[processes.Child]
    services: processes.Child
    nginx: processes.Child
    supervisor: processes.Supervisor
    client_env: dict[str, str]
    log_dir: Path

    def kill_replica(self, index: int) -> None:
        """SIGKILL one API replica (its whole process group), as a crash would."""
        process = self.replicas[index].process
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    @contextlib.contextmanager
    def client(self) -> Iterator[None]:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield


def _wait_for_redis(port: int, child: processes.Child, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise errors.StartupError(f"redis-server exited; see {child.log_path}")
        with contextlib.suppress(redis.RedisError):
            if client.ping():
                return
        time.sleep(0.1)
    raise errors.StartupError("redis-server did not answer PING")


@contextlib.contextmanager
def ha_prefect(pg_admin_url: str, root: Path, replicas: int = 2) -> Iterator[HAPrefect]:
    ensure_installed(REDIS_SERVER)
    supervisor = processes.Supervisor(root / "logs")
    create_database(pg_admin_url, PREFECT_DATABASE)
    try:
        redis_port = net.free_port()
        (root / "redis").mkdir(parents=True)
        redis_argv = [str(REDIS_SERVER), "--port", str(redis_port), "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no", "--dir", str(root / "redis")]  # fmt: skip
        _wait_for_redis(redis_port, supervisor.start("redis", redis_argv, {}))

        socket_dir = dict(p.split("=", 1) for p in pg_admin_url.split("?", 1)[1].split("&"))
        asyncpg_url = f"postgresql+asyncpg://postgres@/{PREFECT_DATABASE}?host={socket_dir['host']}"
        lb_port = net.free_port()
        base = {
            **processes.prefect_server_env(root / "home", asyncpg_url, lb_port),
            **redis_settings(redis_port),
            "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
        upgrade = subprocess.run(
            [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
            env={**os.environ, **base}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if upgrade.returncode != 0:
            raise errors.StartupError(f"prefect server database upgrade: {upgrade.stderr}")

        # one replica after the other: replicas starting together race to register the
        # built-in block types and the loser exits (UniqueViolation on uq_block_type__slug)
        ports = [net.free_port() for _ in range(replicas)]
        children = []
        for i, port in enumerate(ports):
            env = {**base, "PREFECT_HOME": str(root / f"home-api-{i + 1}"),
                   "PREFECT_SERVER_API_PORT": str(port)}  # fmt: skip
            argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                    "--port", str(port), "--no-services"]  # fmt: skip
            child = supervisor.start(f"prefect-api-{i + 1}", argv, env)
            net.wait_for_http(
                f"http://127.0.0.1:{port}/api/health", 180, child.process, child.log_path
            )
            children.append(child)
        services_env = {**base, "PREFECT_HOME": str(root / "home-services")}
        services = supervisor.start(
            "prefect-services",
            [sys.executable, "-m", "prefect", "server", "services", "start"],
            services_env,
        )
        conf = nginx.render(ports, lb_port, root / "nginx")
        lb = supervisor.start("nginx", nginx.argv(conf), {})
        api_url = f"http://127.0.0.1:{lb_port}/api"
        net.wait_for_http(f"{api_url}/health", 30, lb.process, lb.log_path)
        client_env = {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(root / "home-clients"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        yield HAPrefect(api_url, children, services, lb, supervisor, client_env, root / "logs")
    finally:
        supervisor.stop()
        drop_database(pg_admin_url, PREFECT_DATABASE)


def taskflow_jobs(*args: str) -> list[str]:
    return [str(BIN / "taskflow-jobs"), *args]
