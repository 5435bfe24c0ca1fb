"""Prometheus metrics of `consume` and of the webhook receiver (`/metrics`).

Counters and the send-time histogram live in this process's registry and are fed by two
hooks: `record_outcomes` where a dispatcher settles a batch, and `WebhookMetrics`, an
ASGI middleware of the receiver. Queue gauges are not kept in memory: every scrape reads
them with one query (`metrics_queues`), so any process that can reach the database shows
the same figures, and a scrape of a process that cannot shows
`taskflow_queue_metrics_up 0` instead of stale numbers.

A scrape is open, like any Prometheus target, unless METRICS_TOKEN is set: then it needs
`Authorization: Bearer <token>`. No label carries an address, a secret or free text.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from taskflow_jobs import db
from taskflow_jobs.settings import Settings, SettingsError
from taskflow_jobs.sql import query

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
EMAILS = Counter(
    "taskflow_emails",
    "Emails by outcome: sent, retried (later), dead_lettered, released (given back unsent), "
    "skipped (finalised unsent: opted out or suppressed)",
    ["type", "provider", "outcome"],
    registry=REGISTRY,
)
SEND_SECONDS = Histogram(
    "taskflow_send_seconds",
    "The provider's time for one email (SMTP transaction or SendGrid request)",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
WEBHOOK_REQUESTS = Counter(
    "taskflow_webhook_requests",
    "Requests the webhook receiver answered, by route template and status code",
    ["route", "status"],
    registry=REGISTRY,
)
# the dispatcher's actions, as the metric spells them
OUTCOMES = {
    "sent": "sent",
    "retried": "retried",
    "dead-lettered": "dead_lettered",
    "released": "released",
    "skipped": "skipped",
}
MESSAGE_TYPES = frozenset({"welcome_email", "task_assigned", "notification"})
UNMATCHED_ROUTE = "unmatched"


class _Action(Protocol):
    @property
    def value(self) -> str: ...


class _Outcome(Protocol):
    """What the email worker records per message (its Outcome; email sits above jobs)."""

    @property
    def message_type(self) -> str | None: ...
    @property
    def action(self) -> _Action: ...
    @property
    def duration_ms(self) -> float | None: ...


def record_outcomes(outcomes: Iterable[_Outcome], provider: str) -> None:
    """Count settled outcomes (the dispatcher calls this once per batch)."""
    for outcome in outcomes:
        kind = outcome.message_type if outcome.message_type in MESSAGE_TYPES else "other"
        EMAILS.labels(kind, provider, OUTCOMES.get(outcome.action.value, "other")).inc()
        if outcome.duration_ms is not None:
            SEND_SECONDS.labels(provider).observe(outcome.duration_ms / 1000)


# --- queue gauges, read at scrape time --------------------------------------------------


class QueueSnapshot:
    """A collector over rows of `metrics_queues` (None: the database did not answer)."""

    def __init__(self, rows: list[dict[str, Any]] | None) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "taskflow_queue_metrics_up", "1 if this scrape could read the queue figures"
        )
        up.add_metric([], 0 if self.rows is None else 1)
        yield up
        if self.rows is None:
            return
        depth = GaugeMetricFamily(
            "taskflow_queue_depth", "Live messages by state", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "taskflow_queue_oldest_age_seconds",
            "Age of the oldest live message (0 when the queue is empty)",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "taskflow_dead_letters", "Dead letters kept for the queue", labels=["queue"]
        )
        for row in self.rows:
            name = row["queue"]
            for state in ("visible", "in_flight", "delayed"):
                depth.add_metric([name, state], row[state])
            oldest.add_metric([name], row["oldest_age_seconds"] or 0.0)
            dead.add_metric([name], row["dead_letters"])
        yield from (depth, oldest, dead)


def exposition(queue_rows: list[dict[str, Any]] | None) -> bytes:
    """The text a scrape returns: this process's counters, then the queue gauges."""
    scrape = CollectorRegistry()
    scrape.register(QueueSnapshot(queue_rows))
    return generate_latest(REGISTRY) + generate_latest(scrape)


def read_queue_rows(url: str) -> list[dict[str, Any]] | None:
    try:
        with db.connect(url, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SET statement_timeout = '5s'")
            return conn.execute(query("metrics_queues")).fetchall()
    except Exception as exc:  # a scrape reports the failure, it does not fail
        log.warning("queue metrics unavailable: %s", type(exc).__name__)
        return None


def authorized(header: str | None, token: str | None) -> bool:
    if not token:
        return True
    expected = f"Bearer {token}".encode()
    return header is not None and hmac.compare_digest(header.encode(), expected)


# --- /metrics of `consume`: a small HTTP server in a thread --------------------------------


class MetricsServer:
    """Serves `/metrics` on (host, port) from a daemon thread; port 0 picks a free one."""

    def __init__(self, url: str, host: str, port: int, token: str | None = None) -> None:
        database_url = url

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != "/metrics":
                    self._answer(404, b'{"error": "not found"}', "application/json")
                elif not authorized(self.headers.get("Authorization"), token):
                    self._answer(401, b'{"error": "unauthorized"}', "application/json")
                else:
                    body = exposition(read_queue_rows(database_url))
                    self._answer(200, body, CONTENT_TYPE_LATEST)

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:  # scrapes are not news
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> MetricsServer:
        self.thread.start()
        log.info("metrics on http://%s:%d/metrics", *self.httpd.server_address[:2])
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serve_consume_metrics(settings: Settings, url: str) -> Iterator[MetricsServer | None]:
    """`consume`'s /metrics while the block runs (nothing if CONSUME_METRICS_PORT is unset)."""
    if settings.consume_metrics_port is None:
        yield None
        return
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    try:
        server = MetricsServer(
            url, settings.consume_metrics_host, settings.consume_metrics_port, token
        )
    except OSError as exc:
        raise SettingsError(
            f"CONSUME_METRICS_PORT: cannot listen on {settings.consume_metrics_host}:"
            f"{settings.consume_metrics_port} ({exc.strerror})"
        ) from None
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the receiver: a middleware and a route -----------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class WebhookMetrics:
    """Counts each HTTP response by route template (never the raw path) and status."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            WEBHOOK_REQUESTS.labels(route, str(status[0] if status else 500)).inc()
