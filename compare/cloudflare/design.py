"""The Cloudflare design in the comparison: the producer and consumer Workers in Miniflare 3.

`run.mjs` (Node.js) hosts them with the case study's queue settings; the driver signs users
up through the producer's API. The crash is a crashed consumer invocation (the harness in
harness/consumer.js), since Workers have no process of their own to kill.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from compare.workload import API_KEY, UNKNOWN_TYPE, Design, keep_logs
from taskflow_jobs import net
from taskflow_jobs.devstack import processes

HERE = Path(__file__).resolve().parent


def ensure_node_modules() -> None:
    """Node.js (Debian's, when missing) and the pinned npm packages in node_modules/."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nodejs", "npm"], check=True, env=env)
    if not (HERE / "node_modules" / "miniflare").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True
        )


class Cloudflare(Design):
    name = "cloudflare"
    label = "Cloudflare (Workers + Queues, in Miniflare 3)"
    signup_callers = 4  # an API call takes 5-20 ms here: one caller alone falls behind 100/s

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="compare-cloudflare-", dir="/tmp"))
        self.supervisor = processes.Supervisor(self.work / "logs")
        self.port = net.free_port()
        self.control_port = net.free_port()
        self.http = httpx.Client(timeout=30)
        self.host: processes.Child | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def start(self, provider_url: str) -> None:
        ensure_node_modules()
        env = {"SENDGRID_API_URL": provider_url, "SENDGRID_API_KEY": API_KEY}
        argv = ["node", str(HERE / "run.mjs"), "--port", str(self.port),
                "--control-port", str(self.control_port)]  # fmt: skip
        self.host = self.supervisor.start("miniflare", argv, env)
        net.wait_for_http(f"{self.control}/health", 90, self.host.process, self.host.log_path)
        net.wait_for_http(f"{self.api}/health", 30, self.host.process, self.host.log_path)

    def signup(self, email: str, name: str) -> None:
        response = self.http.post(f"{self.api}/api/signup", json={"email": email, "name": name})
        response.raise_for_status()

    def burst(self, emails: list[str]) -> None:
        with ThreadPoolExecutor(8) as pool, httpx.Client(timeout=30) as client:
            list(
                pool.map(
                    lambda e: client.post(
                        f"{self.api}/api/signup", json={"email": e, "name": "Burst"}
                    ).raise_for_status(),
                    emails,
                )
            )

    def enqueue_unknown(self) -> None:
        self.http.post(f"{self.api}/api/jobs", json={"type": UNKNOWN_TYPE}).raise_for_status()

    def crash_target(self) -> int | None:
        return None

    def dead_letters(self) -> list[dict[str, Any]]:
        return [
            {"email": d["body"].get("email"), "reason": None, "attempts": d["attempts"]}
            for d in self.http.get(f"{self.control}/dead").json()
        ]

    def operator_view(self) -> dict[str, Any]:
        assert self.host is not None and self.host.log_path is not None
        log = self.host.log_path.read_text(errors="replace")
        kinds = {
            "Failed to process": "send error logged",
            "Unknown job type": "unknown type logged",
            "to dead letter queue": "moved to the dead letter queue (Miniflare log)",
            "QUEUE email-queue": "batch lines",
            "crashed mid-batch": "crashed invocations",
        }
        counts = Counter(
            label for line in log.splitlines() for key, label in kinds.items() if key in line
        )
        return {"log_lines": dict(counts), "dlq_messages": len(self.dead_letters())}

    def stop(self) -> None:
        self.http.close()
        self.supervisor.stop()
        keep_logs(self.work / "logs", self.name)
        shutil.rmtree(self.work, ignore_errors=True)
