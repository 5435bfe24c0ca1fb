"""Waking dispatchers when work arrives: LISTEN on the queue's channel, with a fallback.

Postgres sends `NOTIFY jobs_new_message, '<queue>'` when visible messages are inserted
(committed). Notifications are a hint, not a promise: a dropped listener connection or a
message that becomes visible later (a retry's delay, an expired lease) sends none, so
every waiter also wakes on a timeout and looks at the queue itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import psycopg
from psycopg import sql

from taskflow_jobs.db import redact_reason, redact_url

log = logging.getLogger(__name__)


class Waker:
    """Broadcasts 'look at the queue' to every subscribed waiter."""

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    def fire(self) -> None:
        for event in self._events:
            event.set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._events.add(event)
        try:
            yield event
        finally:
            self._events.discard(event)


async def wait_for(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set."""
    if event.is_set():
        return True
    if timeout <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()


class Listener:
    """Keeps one connection LISTENing and fires the waker for notifications of `queue`.

    Reconnects with backoff when the connection drops, and fires once after each
    (re)connect because messages may have arrived while nobody was listening.
    """

    def __init__(self, url: str, channel: str, queue: str, waker: Waker) -> None:
        self.url = url
        self.channel = channel
        self.queue = queue
        self.waker = waker
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="email-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=10
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.connected.set()
                    delay = 0.5
                    self.waker.fire()
                    async for notify in conn.notifies():
                        if notify.payload == self.queue:
                            self.waker.fire()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep listening whatever happened; polling covers the gap
                self.connected.clear()
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                log.warning(
                    "LISTEN connection to %s lost (%s: %s); retrying in %.1fs",
                    redact_url(self.url),
                    type(exc).__name__,
                    redact_reason(reason[:200], self.url),
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
