"""Local ports and HTTP readiness: checked before a server starts, polled after."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx

from taskflow_jobs.errors import PortInUse, StartupError

__all__ = ["PortInUse", "check_port_free", "free_port", "wait_for_http"]


def check_port_free(host: str, port: int, what: str, setting: str) -> None:
    """Fail early, naming the setting, when a port we want to listen on is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise PortInUse(
                f"{what} cannot listen on {host}:{port}: the port is in use "
                f"(stop the other program or set {setting})"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(
    url: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Poll `url` until it answers 2xx; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    see = f"; see its log {log}" if log else ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StartupError(
                f"{url} never came up: its process exited with {process.returncode}{see}"
            )
        try:
            if httpx.get(url, timeout=2).is_success:
                return
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.3)
    raise StartupError(f"{url} did not answer within {timeout:.0f}s ({last}){see}")
