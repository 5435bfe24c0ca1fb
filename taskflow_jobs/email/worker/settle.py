"""Settling a batch as its results come in, not once at the end.

An email the provider accepted should be acked within a short, bounded time: if the
process dies later in the batch (up to 500 emails), only what was not yet settled is
sent again. So outcomes gather here and are committed every EMAIL_SETTLE_EVERY outcomes
or EMAIL_SETTLE_INTERVAL seconds after the first one waiting, whichever comes first.

A settle that fails is retried EMAIL_SETTLE_ATTEMPTS times with a short pause, then
raises: the batch releases what is unsettled (or the leases expire), and a message whose
settle keeps failing uses an attempt per expired lease, so it ends as a dead letter (with
an alert) instead of being sent forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from taskflow_jobs.db import Connection
from taskflow_jobs.email.outcomes import Action, Outcome
from taskflow_jobs.jobs import queue

log = logging.getLogger(__name__)

# commit these outcomes; returns the ones still leased to us (the others were taken over)
Settle = Callable[[list[Outcome]], Coroutine[Any, Any, list[Outcome]]]
OnSettled = Callable[[list[Outcome]], None]


class Settler:
    def __init__(
        self,
        settle: Settle,
        on_settled: OnSettled,
        *,
        every: int,
        interval: float,
        attempts: int,
        retry_errors: tuple[type[BaseException], ...],
    ) -> None:
        self._settle = settle
        self._on_settled = on_settled
        self.every = every
        self.interval = interval
        self.attempts = attempts
        self.retry_errors = retry_errors
        self.pending: list[Outcome] = []
        self.settled: set[int] = set()  # message ids no longer ours to release
        self.settles = 0
        self._since: float | None = None
        self._in_flight: asyncio.Task[list[Outcome]] | None = None
        self._in_flight_batch: list[Outcome] = []

    def due_in(self) -> float | None:
        """Seconds until the waiting outcomes must be settled (None: nothing waits)."""
        if self._since is None:
            return None
        return max(0.0, self._since + self.interval - time.monotonic())

    async def add(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        if self._since is None:
            self._since = time.monotonic()
        self.pending += outcomes
        if len(self.pending) >= self.every:
            await self.flush()

    async def flush_if_due(self) -> None:
        if self.due_in() == 0.0:
            await self.flush()

    async def flush(self) -> None:
        """Commit what waits, retrying a failed settle a bounded number of times."""
        if not self.pending:
            return
        batch, self.pending, self._since = self.pending, [], None
        for attempt in range(1, self.attempts + 1):
            # shielded: a cancel waits for the commit instead of racing a release with it
            self._in_flight = asyncio.create_task(self._settle(batch))
            self._in_flight_batch = batch
            try:
                kept = await asyncio.shield(self._in_flight)
            except self.retry_errors as exc:
                if attempt == self.attempts:
                    self.pending[:0] = batch
                    raise
                log.warning(
                    "settling %d message(s) failed (%s); attempt %d/%d",
                    len(batch),
                    type(exc).__name__,
                    attempt,
                    self.attempts,
                )
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
                continue
            finally:
                if self._in_flight.done():
                    self._in_flight = None
            self.settles += 1
            self.settled |= {o.message_id for o in batch}
            self._on_settled(kept)
            return

    async def quiesce(self) -> None:
        """After a cancel: wait for a settle already running, so what it committed counts."""
        task, batch, self._in_flight = self._in_flight, self._in_flight_batch, None
        if task is None:
            return
        try:
            kept = await task
        except BaseException:  # it did not commit: those messages are still ours
            return
        self.settled |= {o.message_id for o in batch}
        self._on_settled(kept)


def settle_outcomes(
    conn: Connection, token: Any, outcomes: list[Outcome], now: datetime | None = None
) -> list[Outcome]:
    """Apply outcomes in one transaction, one statement per kind; keep the ones still
    leased to us (a guarded update skips what another consumer took over)."""
    by = {a: [o for o in outcomes if o.action is a] for a in Action}
    done: set[int] = set()
    done |= set(queue.ack(conn, token, [o.message_id for o in by[Action.SENT]], now=now))
    retries = [queue.Retry(o.message_id, o.error or "", o.delay or 0) for o in by[Action.RETRIED]]
    done |= set(queue.retry_later_many(conn, token, retries, now=now))
    failures = [queue.Failure(o.message_id, o.error or "failed") for o in by[Action.DEAD_LETTERED]]
    done |= set(queue.dead_letter_many(conn, token, failures, now=now))
    done |= set(queue.release(conn, token, [o.message_id for o in by[Action.RELEASED]], now=now))
    skips = [queue.Failure(o.message_id, o.error or "skipped") for o in by[Action.SKIPPED]]
    done |= set(queue.skip_many(conn, token, skips, now=now))
    lost = [o.message_id for o in outcomes if o.message_id not in done]
    if lost:
        log.warning("lease lost before settling messages %s (another consumer took them)", lost)
    return [o for o in outcomes if o.message_id in done]
