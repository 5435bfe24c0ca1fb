"""A real local HTTP server standing in for a Slack incoming webhook.

It records every request and answers 200 "ok", or the scripted answers queued with
`answer(...)` first (e.g. 429 with Retry-After, then 500), like Slack does.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WEBHOOK_PATH = "/services/T0TASKFLOW/B0TEST/s3cretWebhookToken"


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    status: int
    at: float

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))


@dataclass
class SlackStub:
    server: ThreadingHTTPServer
    requests: list[Request] = field(default_factory=list)
    scripted: deque = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{WEBHOOK_PATH}"

    def answer(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        """Queue one scripted answer; later requests get 200 "ok" again."""
        self.scripted.append((status, body, headers or {}))

    @property
    def delivered(self) -> list[Request]:
        """Requests Slack 'accepted' (answered 200)."""
        with self.lock:
            return [r for r in self.requests if r.status == 200]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.delivered) >= count:
                return self.delivered
            time.sleep(0.1)
        raise TimeoutError(f"expected {count} Slack post(s), got {len(self.delivered)}")

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.scripted.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_slack_stub() -> SlackStub:
    stub: SlackStub | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            with stub.lock:
                status, text, headers = (
                    stub.scripted.popleft() if stub.scripted else (200, "ok", {})
                )
                if self.path != WEBHOOK_PATH:
                    status, text, headers = 404, "no_service", {}
                stub.requests.append(Request(self.path, body, status, time.monotonic()))
            payload = text.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub = SlackStub(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return stub
