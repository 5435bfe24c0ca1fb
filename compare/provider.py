"""The email provider all three designs post to: the SendGrid stand-in with scripted faults.

It wraps `taskflow_jobs.devstack.sendgrid_stub.SendGridStub` (the same stand-in the test
suite uses) and adds what the comparison's workload needs, all driven from `/_compare`:

- a steady failure rate: attempt *n* to an address fails with 500 when a hash of
  (address, n) falls under the rate, so every design meets the same failures at the same
  attempts, run after run;
- an outage switch: while on, every request gets 503;
- a crash trigger: after *k* more accepted requests it SIGKILLs a given process group (a
  consumer process dies with the provider's 202 on the wire) or answers with the header
  `x-compare-crash: 1` (the Workers harness turns that into a crashed invocation);
- a compact log of every request: (arrival time, address, status), and a count of the
  addresses accepted so far.

    python -m compare.provider --port N --api-key KEY
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import uvicorn

from taskflow_jobs.devstack.sendgrid_stub import Reply, SendGridStub, errors


def fails(address: str, attempt: int, rate: float) -> bool:
    """Whether attempt `attempt` (0-based) to `address` is one of the scripted 5xx."""
    digest = hashlib.sha256(f"{address}#{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


class Faults:
    """The scripted behaviour, shared by the stub's script and the control route."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_rate = 0.0
        self.outage = False
        self.crash_after: int | None = None
        self.crash_pid: int | None = None
        self.crashed_at: float | None = None
        self.attempts: Counter[str] = Counter()
        self.log: list[tuple[float, str, int]] = []

    def reply(self, body: dict[str, Any]) -> Reply:
        address = body["personalizations"][0]["to"][0]["email"]
        now = time.time()
        with self.lock:
            attempt = self.attempts[address]
            self.attempts[address] += 1
            if self.outage:
                reply = errors("Service Unavailable", 503)
            elif fails(address, attempt, self.fail_rate):
                reply = errors("Internal Server Error", 500)
            else:
                reply = Reply(202)
                reply = self._maybe_crash(reply, now)
            self.log.append((now, address, reply.status))
        return reply

    def _maybe_crash(self, reply: Reply, now: float) -> Reply:
        if self.crash_after is None:
            return reply
        self.crash_after -= 1
        if self.crash_after > 0:
            return reply
        self.crash_after = None
        self.crashed_at = now
        if self.crash_pid is None:
            return Reply(202, {"x-compare-crash": "1"})
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.crash_pid, signal.SIGKILL)
        self.crash_pid = None
        return reply

    def control(self, change: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if "fail_rate" in change:
                self.fail_rate = float(change["fail_rate"])
            if "outage" in change:
                self.outage = bool(change["outage"])
            if "crash_after" in change:
                self.crash_after = int(change["crash_after"])
                self.crash_pid = change.get("crash_pid")
                self.crashed_at = None
            if change.get("reset"):
                self.attempts.clear()
                self.log.clear()
                self.crashed_at = None
            return {
                "fail_rate": self.fail_rate,
                "outage": self.outage,
                "crash_armed": self.crash_after is not None,
                "crashed_at": self.crashed_at,
                "requests": len(self.log),
            }

    def accepted(self, prefix: str) -> int:
        """How many addresses starting with `prefix` the provider accepted (cheap to poll)."""
        with self.lock:
            return len({to for _, to, status in self.log if status < 300 and to.startswith(prefix)})

    def requests(self) -> list[tuple[float, str, int]]:
        with self.lock:
            return list(self.log)


class FaultyProvider:
    """ASGI app: `/_compare/*` for the driver, everything else to the SendGrid stub."""

    def __init__(self, api_key: str) -> None:
        self.faults = Faults()
        self.stub = SendGridStub(api_key, script=self.faults.reply, keep_bodies=False)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/_compare/"):
            await self.stub(scope, receive, send)
            return
        raw = b""
        while True:
            event = await receive()
            raw += event.get("body", b"")
            if not event.get("more_body"):
                break
        if scope["path"] == "/_compare/requests":
            answer: Any = self.faults.requests()
        elif scope["path"] == "/_compare/accepted":
            answer = self.faults.accepted(json.loads(raw or b"{}").get("prefix", ""))
        else:
            answer = self.faults.control(json.loads(raw or b"{}"))
        body = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    uvicorn.run(
        FaultyProvider(args.api_key),
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )


if __name__ == "__main__":
    main()
