"""Prefect events out of the receiver.

Events are POSTed to the Prefect API (`POST {PREFECT_API_URL}/events`, the same endpoint
`prefect event emit` ends up at) rather than sent with `prefect.events.emit_event`, whose
websocket worker is fire-and-forget: `/api/events/{name}` must know the server took the
event before it answers 202. No client-side retries either: on failure the route answers
503 and the sender retries.

`taskflow.email.enqueued` is different: the job is already durable and the every-minute
email-dispatch sweep sends it anyway, so the event only shortens the wait. It is
best-effort and coalesced (`EnqueuedEvents`): a burst of jobs becomes one event per
interval, so a webhook storm does not become a storm of flow runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from prefect.events import Event
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL

log = logging.getLogger("taskflow_jobs.webhooks")

RESOURCE = {
    "prefect.resource.id": "taskflow.webhooks",
    "prefect.resource.name": "taskflow-jobs webhooks",
}
EVENT_PREFIX = "taskflow."
EMAIL_ENQUEUED = "taskflow.email.enqueued"
# Event ids derived from a delivery id are stable across retries; Prefect's trigger
# evaluation skips an event id it has already seen (for 30 minutes).
DELIVERY_NAMESPACE = uuid.UUID("5b0b6f0e-8f7a-4c3e-9d6b-2f1a7c9e4d10")
MAX_JOB_IDS = 100


class EventsUnavailable(RuntimeError):
    """The Prefect API did not take the event; the message is safe to show to a sender."""


class EventsRejected(EventsUnavailable):
    """The Prefect API refused the event itself (a 4xx other than auth or rate limiting)."""


def event_id_for(name: str, delivery: str | None) -> uuid.UUID:
    return uuid.uuid5(DELIVERY_NAMESPACE, f"{name}:{delivery}") if delivery else uuid.uuid4()


def prefect_auth_headers() -> dict[str, str]:
    """The Authorization header the Prefect client would send (auth string or API key)."""

    auth_string = _secret(PREFECT_API_AUTH_STRING.value())
    if auth_string:
        token = base64.b64encode(auth_string.encode()).decode()
        return {"Authorization": f"Basic {token}"}
    api_key = _secret(PREFECT_API_KEY.value())
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    return {}


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


def configured_api_url() -> str | None:

    return PREFECT_API_URL.value() or None


class PrefectEvents:
    """Sends events to one Prefect API and tells whether it took them."""

    def __init__(
        self, api_url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            timeout=timeout,
            headers=headers if headers is not None else prefect_auth_headers(),
        )

    async def emit(self, events: list[Event]) -> None:
        """POST the events; EventsUnavailable unless the server answered 2xx."""
        body = [e.model_dump(mode="json") for e in events]
        try:
            response = await self._client.post("/events", json=body)
        except httpx.HTTPError as exc:
            raise EventsUnavailable(f"Prefect API unreachable ({type(exc).__name__})") from None
        if response.is_success:
            return
        if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 408, 429):
            raise EventsRejected(f"Prefect API refused the event ({response.status_code})")
        raise EventsUnavailable(f"Prefect API answered {response.status_code}")

    async def healthy(self) -> bool:
        try:
            response = await self._client.get("/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.is_success

    async def aclose(self) -> None:
        await self._client.aclose()


def make_event(name: str, payload: dict[str, Any], event_id: uuid.UUID, **extra: Any) -> Event:
    return Event(event=name, resource=RESOURCE, payload=payload, id=event_id, **extra)


@dataclass
class EnqueuedEvents:
    """Coalesces `taskflow.email.enqueued`: the first job of a quiet period is announced at
    once, later ones at most once per `interval` seconds, in one event listing them."""

    events: PrefectEvents | None
    interval: float = 2.0
    queue: str = "email_notifications"
    _pending: list[tuple[int, str]] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task | None = None
    _failing: bool = False
    emitted: int = 0

    def job_enqueued(self, job_id: int, message_type: str) -> None:
        if self.events is None:
            return
        self._pending.append((job_id, message_type))
        self._wake.set()

    def start(self) -> None:
        if self.events is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="taskflow.email.enqueued")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await self.flush()
            await asyncio.sleep(self.interval)

    async def flush(self) -> None:
        self._wake.clear()
        batch, self._pending = self._pending, []
        if not batch or self.events is None:
            return
        payload = {
            "queue": self.queue,
            "count": len(batch),
            "job_ids": [job_id for job_id, _ in batch[:MAX_JOB_IDS]],
            "types": dict(Counter(kind for _, kind in batch)),
        }
        related = [
            {
                "prefect.resource.id": f"taskflow.queue.{self.queue}",
                "prefect.resource.role": "queue",
                "prefect.resource.name": self.queue,
            }
        ]
        event = make_event(EMAIL_ENQUEUED, payload, uuid.uuid4(), related=related)
        try:
            await self.events.emit([event])
        except asyncio.CancelledError:
            self._pending[:0] = batch  # shutting down: aclose() announces them
            raise
        except EventsUnavailable as exc:
            if not self._failing:
                log.warning(
                    "could not emit %s for %d job(s): %s; the jobs are stored and the "
                    "every-minute email-dispatch sweep will send them",
                    EMAIL_ENQUEUED,
                    len(batch),
                    exc,
                )
            self._failing = True
            return
        if self._failing:
            log.info("Prefect API reachable again; %s events resumed", EMAIL_ENQUEUED)
        self._failing = False
        self.emitted += 1

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop, announcing what is still pending (best effort, bounded)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.flush()
