"""The one small interface every email provider implements, and the outcomes it reports.

A provider sends a list of rendered emails inside a *session* (one per batch: the SMTP
provider keeps one connection open for the whole session) and reports one `SendResult`
per email. It never raises for a single bad email: it classifies it.

- ACCEPTED: the provider took it (SMTP 250, SendGrid 202).
- TRANSIENT: worth retrying later (timeouts, connection drops mid-batch, 5xx, 429 with its
  Retry-After, SMTP 4xx).
- PERMANENT: retrying cannot help (SendGrid 400, SMTP 5xx, an address it refuses). With
  `bounce` set the recipient's address itself was refused (a hard bounce): it is suppressed.
- UNAVAILABLE: the provider as a whole cannot be used right now (cannot connect, TLS or
  authentication refused). Not the message's fault: it is released without using an
  attempt, and the batch fails so that Prefect retries it and the run shows as failed.
- NOT_SENT: never tried because the dispatcher is stopping or the lease is running out;
  released as well.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from taskflow_jobs.email.compose import OutgoingEmail
from taskflow_jobs.email.providers.limit import LaneLimit
from taskflow_jobs.jobs.ratelimit import UNLIMITED, ProviderThrottle


class SendStatus(StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNAVAILABLE = "unavailable"
    NOT_SENT = "not_sent"


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    error: str | None = None
    retry_after: float | None = None
    duration_ms: float | None = None  # how long the provider took (for the logs)
    throttled: bool = False  # the provider asked every sender to slow down (a 429)
    bounce: str | None = None  # the address was refused for good: why, without the address

    def timed(self, started: float) -> SendResult:
        # built directly: dataclasses.replace costs more than the rest of a result's life
        duration = round((time.perf_counter() - started) * 1000, 1)
        return SendResult(
            self.status, self.error, self.retry_after, duration, self.throttled, self.bounce
        )

    @classmethod
    def accepted(cls) -> SendResult:
        return cls(SendStatus.ACCEPTED)

    @classmethod
    def transient(
        cls, error: str, retry_after: float | None = None, *, throttled: bool = False
    ) -> SendResult:
        return cls(SendStatus.TRANSIENT, error, retry_after, throttled=throttled)

    @classmethod
    def permanent(cls, error: str) -> SendResult:
        return cls(SendStatus.PERMANENT, error)

    @classmethod
    def hard_bounce(cls, error: str, why: str) -> SendResult:
        return cls(SendStatus.PERMANENT, error, bounce=why)

    @classmethod
    def unavailable(cls, error: str) -> SendResult:
        return cls(SendStatus.UNAVAILABLE, error)


NOT_SENT = SendResult(SendStatus.NOT_SENT, "not sent: dispatcher stopping or lease ending")


class ProviderUnavailable(RuntimeError):
    """The provider cannot be used for the whole batch; never contains a secret."""


@dataclass
class SendControl:
    """Lets a provider stop between emails (on shutdown, or before the lease runs out) and
    tell each result as soon as it is known, so an accepted email is acked without waiting
    for the rest of its slice (a slow or hanging send next to it)."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    deadline: float = float("inf")  # time.monotonic() after which nothing new is sent
    on_result: Callable[[OutgoingEmail, SendResult], None] | None = None  # in the event loop
    urgent: bool = False  # transactional: ahead of the bulk sends waiting for a slot

    def may_send(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def tell(self, item: OutgoingEmail, result: SendResult) -> None:
        if self.on_result is not None:
            self.on_result(item, result)


class ProviderSession(Protocol):
    async def send(self, emails: Sequence[OutgoingEmail], control: SendControl) -> list[SendResult]:
        """Send `emails`, one result per email in the same order."""
        ...


class Provider(Protocol):
    name: str

    def session(self) -> AbstractAsyncContextManager[ProviderSession]:
        """`async with provider.session() as s`: resources held for one batch."""
        ...

    async def aclose(self) -> None:
        """Release pooled resources (HTTP clients) when the dispatcher stops."""
        ...


class SendsOne(Protocol):
    async def send_one(self, item: OutgoingEmail) -> SendResult: ...


class ConcurrentSession:
    """A session for providers that send each email on its own (HTTP API, files).

    `limit` is shared by every session of the provider, so the provider's concurrency
    limit holds however many batches run at once, and an urgent send takes the next free
    slot before the bulk sends waiting for one; `throttle` is its rate limit, shared with
    every other consumer (an urgent send holding a slot is the next to take a token).
    """

    def __init__(
        self, provider: SendsOne, limit: LaneLimit, throttle: ProviderThrottle = UNLIMITED
    ) -> None:
        self.provider = provider
        self.limit = limit
        self.throttle = throttle
        self.unavailable = False

    async def send(self, emails: Sequence[OutgoingEmail], control: SendControl) -> list[SendResult]:
        async def one(item: OutgoingEmail) -> SendResult:
            await self.limit.acquire(control.urgent)  # not `slot()`: a context per email
            try:
                if self.unavailable or not control.may_send():
                    return NOT_SENT
                if not await self.throttle.wait(control.deadline, control.stop):
                    return NOT_SENT
                started = time.perf_counter()
                result = (await self.provider.send_one(item)).timed(started)
                control.tell(item, result)
                if result.throttled:
                    await self.throttle.aback_off(result.retry_after)
                if result.status is SendStatus.UNAVAILABLE:
                    self.unavailable = True  # the rest would fail the same way
                return result
            finally:
                self.limit.release()

        return list(await asyncio.gather(*(one(item) for item in emails)))


@asynccontextmanager
async def concurrent_session(
    provider: SendsOne, limit: LaneLimit, throttle: ProviderThrottle = UNLIMITED
) -> AsyncIterator[ConcurrentSession]:
    yield ConcurrentSession(provider, limit, throttle)
