"""One rate limit per provider, shared by every consumer on every machine.

The bucket lives in Postgres (`jobs.rate_limits`, `jobs.take_tokens`): the database every
consumer already needs, with one clock, so the limit holds whether or not Prefect
answers. A consumer reserves tokens a few at a time (about 50 ms of the rate) with the
time they become usable, sleeps until then and spends them, so a send costs a database
round trip only every few emails, nobody polls an empty bucket, and what a consumer
holds can never add more than a chunk to any window.

A provider's own "slow down" (a 429 with Retry-After) is shared the same way: one row,
`blocked_until`, that every consumer honours before its next send. Without a rate limit
the backoff is still honoured: the row is read at most four times a second.

Fails closed: no token without the database. A consumer that cannot reach it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable

import psycopg

from taskflow_jobs.db import Connection, DatabaseUnavailable, connect
from taskflow_jobs.sql import query

log = logging.getLogger(__name__)

# A consumer asks for this much of the rate at once (fewer round trips, bounded holdings).
CHUNK_SECONDS = 0.05
# The bucket holds at most this much of the rate: an idle minute does not become a burst.
BURST_SECONDS = 0.1
# Tokens not spent within this long are dropped rather than saved up.
TOKEN_TTL = 0.5
# Without a rate limit, how often the shared backoff is read.
BACKOFF_POLL = 0.25
# Waits are never shorter (a busy loop against the database helps nobody).
MIN_WAIT = 0.002
DATABASE_RETRY = 1.0
# When a 429 names no Retry-After.
DEFAULT_BACKOFF = 1.0


class ProviderThrottle:
    """The shared limit of one provider, as seen by one process (thread-safe)."""

    def __init__(self, provider: str, rate: float | None, url: str | None) -> None:
        self.provider = provider
        self.rate = rate
        self.url = url
        self.burst = max(1.0, rate * BURST_SECONDS) if rate else None
        self.chunk = max(1, math.floor(rate * CHUNK_SECONDS)) if rate else 1
        self._conn: Connection | None = None
        # `_lock` guards the local state and is only held for microseconds (the event loop
        # takes it); `_trip` serialises the database round trips (worker threads only)
        self._lock = threading.Lock()
        self._trip = threading.Lock()
        self._tokens = 0
        self._usable_at = 0.0  # time.monotonic() when the reserved tokens may be spent
        self._tokens_expire = 0.0
        self._not_before = 0.0  # time.monotonic(): no point asking the database earlier
        self._backoff_checked = -math.inf
        self._alock: asyncio.Lock | None = None
        self._database_down = False
        self.round_trips = 0

    @property
    def enabled(self) -> bool:
        return self.url is not None

    # --- taking a token ----------------------------------------------------------------

    def _local(self, now: float) -> float | None:
        """0.0 = a token taken locally; > 0 = wait that long; None = ask the database."""
        if now < self._not_before:
            return self._not_before - now
        if self.rate is None:
            return 0.0 if now - self._backoff_checked < BACKOFF_POLL else None
        if self._tokens > 0 and now < self._tokens_expire:
            if now < self._usable_at:
                return self._usable_at - now
            self._tokens -= 1
            return 0.0
        return None

    def take(self) -> float:
        """Take one token: 0.0 when taken, else the seconds to wait before trying again.

        May block on one database round trip; call it from a worker thread."""
        if not self.enabled:
            return 0.0
        with self._lock:
            local = self._local(time.monotonic())
        if local is not None:
            return local
        with self._trip:
            with self._lock:  # another thread may have refilled while this one waited
                local = self._local(time.monotonic())
            if local is not None:
                return local
            try:
                granted, wait = self._take_tokens(self.chunk)
            except (psycopg.Error, DatabaseUnavailable) as exc:
                self._close()
                if self.rate is None:
                    # no limit to keep, only the shared backoff to hear of: not worth
                    # holding sends for (the settle will meet the outage and say so)
                    with self._lock:
                        self._backoff_checked = time.monotonic()
                    return 0.0
                if not self._database_down:
                    log.warning(
                        "rate limit %s: database unreachable (%s); not sending until it is back",
                        self.provider,
                        type(exc).__name__,
                    )
                self._database_down = True
                with self._lock:
                    self._not_before = time.monotonic() + DATABASE_RETRY
                return DATABASE_RETRY
            self._database_down = False
        with self._lock:
            return self._granted(granted, wait, time.monotonic())

    def _granted(self, granted: int, wait: float, now: float) -> float:
        if self.rate is None:
            self._backoff_checked = now
            if granted:
                return 0.0
            self._not_before = now + wait
            return max(wait, MIN_WAIT)
        if granted == 0:
            wait = max(wait, MIN_WAIT)
            self._not_before = now + wait
            return wait
        self._usable_at = now + wait
        self._tokens_expire = self._usable_at + TOKEN_TTL
        if wait > 0:
            self._tokens = granted
            return wait
        self._tokens = granted - 1
        return 0.0

    def _take_tokens(self, want: int) -> tuple[int, float]:
        if self._conn is None or self._conn.closed:
            assert self.url is not None
            self._conn = connect(self.url, autocommit=True, connect_timeout=5)
        params = {"provider": self.provider, "want": want, "rate": self.rate, "burst": self.burst}
        row = self._conn.execute(query("take_tokens"), params).fetchone()
        self.round_trips += 1
        return int(row["granted"]), float(row["wait_seconds"])

    async def wait(self, deadline: float = math.inf, stop: asyncio.Event | None = None) -> bool:
        """Wait for a token; False if it would come after `deadline` (monotonic) or on stop."""
        if not self.enabled:
            return True
        if self._alock is None:
            self._alock = asyncio.Lock()
        while True:
            with self._lock:
                delay = self._local(time.monotonic())
            if delay is None:
                async with self._alock:  # one round trip at a time per process
                    delay = await asyncio.to_thread(self.take)
            if delay <= 0:
                return True
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                return False
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    def wait_blocking(self, deadline: float = math.inf, stopped: Callable[[], bool] = bool) -> bool:
        """`wait` for a provider that sends from a worker thread (SMTP)."""
        while True:
            delay = self.take()
            if delay <= 0:
                return True
            if time.monotonic() + delay > deadline or stopped():
                return False
            time.sleep(min(delay, 0.5))

    # --- the provider's own backoff ------------------------------------------------------

    def back_off(self, seconds: float | None) -> None:
        """The provider said "slow down": every consumer waits `seconds` (blocking call)."""
        if not self.enabled:
            return
        seconds = DEFAULT_BACKOFF if seconds is None else max(0.0, seconds)
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)
            self._tokens = 0
        with self._trip:
            try:
                if self._conn is None or self._conn.closed:
                    assert self.url is not None
                    self._conn = connect(self.url, autocommit=True, connect_timeout=5)
                params = {"provider": self.provider, "seconds": seconds}
                self._conn.execute(query("provider_backoff"), params)
            except (psycopg.Error, DatabaseUnavailable) as exc:  # the others did not hear
                self._close()
                log.warning("could not share the %s backoff: %s", self.provider, type(exc).__name__)
        log.info("%s asked to slow down: every consumer waits %.1fs", self.provider, seconds)

    async def aback_off(self, seconds: float | None) -> None:
        if self.enabled:
            await asyncio.to_thread(self.back_off, seconds)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        with self._trip:
            self._close()


UNLIMITED = ProviderThrottle("none", None, None)
