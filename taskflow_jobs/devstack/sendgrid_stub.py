"""A SendGrid v3 stand-in: `POST /v3/mail/send` answers 202 (or whatever a script says).

It checks the bearer key and that the body is JSON, records every request with the time
it arrived, and can be told per request to answer 400, 429 with Retry-After, 500, or to
hang; `Throttling` answers like a rate-limited account (429 above a rate). Runs in a
thread (`StubServer`, for tests) or as a process (for benchmarks:
`python -m taskflow_jobs.devstack.sendgrid_stub --port N`), where `GET /_stub/received`
returns what it recorded and `DELETE /_stub/received` clears it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from taskflow_jobs.net import free_port


@dataclass(frozen=True)
class Reply:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering (a large value = hang)


@dataclass(frozen=True)
class Received:
    at: float  # time.time() when the request body was read
    body: dict[str, Any]
    status: int  # what the stub answered

    @property
    def to(self) -> str:
        return self.body["personalizations"][0]["to"][0]["email"]

    @property
    def message_id(self) -> int:
        return int(self.body["custom_args"]["taskflow_message_id"])


def errors(message: str, status: int) -> Reply:
    return Reply(
        status,
        {"content-type": "application/json"},
        json.dumps({"errors": [{"message": message, "field": None}]}).encode(),
    )


class Throttling:
    """A script that answers like a rate-limited SendGrid: 202 while the requests stay
    within `rate` per second (a one-second bucket), else 429 with `Retry-After`."""

    def __init__(self, rate: float, retry_after: float = 1.0) -> None:
        self.rate = rate
        self.retry_after = retry_after
        self.tokens = rate
        self.at = time.monotonic()
        self.lock = threading.Lock()
        self.refused = 0

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return Reply()
            self.refused += 1
        reply = errors("too many requests", 429)
        return Reply(429, {**reply.headers, "retry-after": f"{self.retry_after:g}"}, reply.body)


class Faults:
    """A script that answers a random share of requests 500, 429 (with `Retry-After`) or
    hangs for `hang_seconds` and then answers 503, i.e. past the client's timeout and never
    accepted; the rest 202. Seeded, so a run can be repeated. `spec` reads like
    `500=0.10,429=0.05,hang=0.01`."""

    KINDS = ("500", "429", "hang")

    def __init__(
        self, spec: str, seed: int = 1, hang_seconds: float = 3.0, retry_after: float = 1.0
    ) -> None:
        self.shares: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            kind, _, share = part.partition("=")
            if kind not in self.KINDS:
                raise ValueError(f"unknown fault {kind!r}: one of {', '.join(self.KINDS)}")
            self.shares[kind] = float(share)
        if sum(self.shares.values()) > 1:
            raise ValueError(f"fault shares add up to more than 1: {spec}")
        self.random = random.Random(seed)
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(("202", *self.KINDS), 0)

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            draw, kind = self.random.random(), "202"
            for name, share in self.shares.items():
                if draw < share:
                    kind = name
                    break
                draw -= share
            self.counts[kind] += 1
        if kind == "500":
            return errors("internal error", 500)
        if kind == "429":
            reply = errors("too many requests", 429)
            return Reply(429, {**reply.headers, "retry-after": f"{self.retry_after:g}"}, reply.body)
        if kind == "hang":
            return Reply(503, errors("timed out", 503).headers, b"", delay=self.hang_seconds)
        return Reply()


class SendGridStub:
    """The ASGI app. `script(body) -> Reply` decides each answer (default 202)."""

    def __init__(
        self,
        api_key: str = "test-key",
        script: Callable[[dict[str, Any]], Reply] | None = None,
        keep_bodies: bool = True,
    ) -> None:
        self.api_key = api_key
        self.script = script or (lambda body: Reply())
        self.keep_bodies = keep_bodies
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0  # most requests being answered at the same time

    def accepted(self) -> list[Received]:
        """Requests that were answered 2xx."""
        with self.lock:
            return [r for r in self.received if r.status < 300]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            reply = self._answer(scope, body)
            if reply.delay:
                await asyncio.sleep(reply.delay)
        finally:
            self.in_flight -= 1
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})

    def _answer(self, scope: dict, raw: bytes) -> Reply:
        path, method = scope["path"], scope["method"]
        if path == "/_stub/received":
            if method == "DELETE":
                with self.lock:
                    self.received.clear()
                return Reply(204)
            with self.lock:
                rows = [
                    {
                        "at": r.at,
                        "to": r.to,
                        "message_id": r.message_id,
                        "status": r.status,
                        "body": r.body if self.keep_bodies else None,
                    }
                    for r in self.received
                ]
            return Reply(200, {"content-type": "application/json"}, json.dumps(rows).encode())
        if path != "/v3/mail/send" or method != "POST":
            return errors("not found", 404)
        headers = dict(scope["headers"])
        if headers.get(b"authorization") != f"Bearer {self.api_key}".encode():
            return errors("The provided authorization grant is invalid, expired, or revoked", 401)
        try:
            body = json.loads(raw)
            body["personalizations"][0]["to"][0]["email"]  # noqa: B018 - shape check
        except (ValueError, KeyError, IndexError, TypeError):
            return errors("Bad Request", 400)
        at = time.time()
        reply = self.script(body)
        with self.lock:
            self.received.append(Received(at, body, reply.status))
        return reply


class StubServer:
    """Runs a SendGridStub with uvicorn in a background thread on a free port."""

    def __init__(self, stub: SendGridStub, host: str = "127.0.0.1", port: int | None = None):
        self.stub = stub
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            stub,
            host=host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="sendgrid-stub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> StubServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the SendGrid stub did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument(
        "--rate-limit", type=float, help="answer 429 with Retry-After above this many per second"
    )
    parser.add_argument("--faults", help="answer a share with faults: 500=0.1,429=0.05,hang=0.01")
    parser.add_argument("--hang-seconds", type=float, default=3.0, help="how long a hang lasts")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault draws")
    parser.add_argument(
        "--no-bodies", action="store_true", help="record addresses and ids, not whole bodies"
    )
    args = parser.parse_args()
    script: Callable[[dict[str, Any]], Reply] | None = None
    if args.rate_limit:
        script = Throttling(args.rate_limit)
    elif args.faults:
        script = Faults(args.faults, args.seed, args.hang_seconds)
    uvicorn.run(
        SendGridStub(args.api_key, script, keep_bodies=not args.no_bodies),
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )


if __name__ == "__main__":
    main()
