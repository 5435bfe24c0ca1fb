"""Settling a batch as its results come in, not once at the end.

An email the provider accepted should be acked within a short, bounded time: if the
process dies later in the batch (up to 500 emails), only what was not yet settled is
sent again. So outcomes gather here, each accepted email as soon as the provider answers
(not when its slice of the batch is done), and are committed as soon as the batch's
previous settle has committed (group commit: what arrived meanwhile goes in one
transaction), or at most once per EMAIL_SETTLE_INTERVAL when that is set, or as soon as
EMAIL_SETTLE_EVERY wait. A trickle is acked email by email, so a kill between accept and
ack re-sends about nothing; a storm's outcomes group by themselves. The window a kill
re-sends in is the fault soak's `ack_lag`.

A settle that fails (PostgreSQL restarting, a failover) is retried with a growing pause
for as long as the batch's lease lasts, and at least EMAIL_SETTLE_ATTEMPTS times: an
email the provider accepted is acked when the database is back instead of being sent
again once its lease expires. Then it raises: the batch releases what is unsettled (or
the leases expire), and a message whose settle keeps failing uses an attempt per expired
lease, so it ends as a dead letter (with an alert) instead of being sent forever.

The batches in flight share one `SettleLine`: while a trip to PostgreSQL is under way,
the settles of every batch gather, and go in the next trip together (one thread hop, one
connection, and for acks one statement). Measured: the settles had been the biggest
part of the dispatcher's own CPU per email (bench/_dispatch_gap.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from taskflow_jobs.db import Connection, DatabaseUnavailable, has_input, redact_url
from taskflow_jobs.email.compose import OutgoingEmail
from taskflow_jobs.email.outcomes import Action, Outcome
from taskflow_jobs.email.providers.base import SendResult, SendStatus
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
        deadline: float | None = None,
    ) -> None:
        self._settle = settle
        self._on_settled = on_settled
        self.every = every
        self.interval = interval
        self.attempts = attempts
        self.retry_errors = retry_errors
        self.deadline = deadline  # time.monotonic() when the lease ends: retry until then
        self.pending: list[Outcome] = []
        self.settled: set[int] = set()  # message ids no longer ours to release
        self.settles = 0
        self.gave_up = False  # a settle failed all its attempts
        self._since: float | None = None
        self._last = -math.inf  # when the last settle started
        self._in_flight: asyncio.Task[list[Outcome]] | None = None
        self._in_flight_batch: list[Outcome] = []

    def due_in(self) -> float | None:
        """Seconds until the waiting outcomes must be settled (None: nothing waits)."""
        if self._since is None:
            return None
        return max(0.0, max(self._since, self._last + self.interval) - time.monotonic())

    def offer(self, outcomes: list[Outcome]) -> None:
        """Queue outcomes for the next settle (no await: callable from a send callback)."""
        if not outcomes:
            return
        if self._since is None:
            self._since = time.monotonic()
        self.pending += outcomes

    async def add(self, outcomes: list[Outcome]) -> None:
        self.offer(outcomes)
        if len(self.pending) >= self.every:
            await self.flush()

    async def flush_if_due(self) -> None:
        if self.due_in() == 0.0:
            await self.flush()

    async def flush(self, *, patient: bool = True) -> None:
        """Commit what waits, retrying a failed settle until the lease ends (bounded);
        not `patient` (the last try after a cancel): EMAIL_SETTLE_ATTEMPTS tries only."""
        if not self.pending:
            return
        deadline = self.deadline if patient else None
        batch, self.pending, self._since = self.pending, [], None
        self._last = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            # shielded: a cancel waits for the commit instead of racing a release with it
            self._in_flight = asyncio.create_task(self._settle(batch))
            self._in_flight_batch = batch
            try:
                kept = await asyncio.shield(self._in_flight)
            except self.retry_errors as exc:
                pause = retry_pause(attempt)
                if not self._retry_again(attempt, pause, deadline):
                    self.pending[:0] = batch
                    self.gave_up = True
                    raise
                if attempt <= self.attempts or attempt % 10 == 0:
                    left = 0.0 if deadline is None else deadline - time.monotonic()
                    log.warning(
                        "settling %d message(s) failed (%s); attempt %d, retrying in %.1fs%s",
                        len(batch),
                        type(exc).__name__,
                        attempt,
                        pause,
                        f" (for up to {left:.0f}s, until the lease ends)" if left > 0 else "",
                    )
                try:
                    await asyncio.sleep(pause)
                except asyncio.CancelledError:  # still ours: the batch's cleanup settles it
                    self.pending[:0] = batch
                    raise
                continue
            finally:
                if self._in_flight.done():
                    self._in_flight = None
            if attempt > 1:
                log.info("settled %d message(s) at attempt %d", len(batch), attempt)
            self.settles += 1
            self.settled |= {o.message_id for o in batch}
            self._on_settled(kept)
            return

    def _retry_again(self, attempt: int, pause: float, deadline: float | None) -> bool:
        """At least `attempts` tries; more while the lease outlasts the next pause."""
        if attempt < self.attempts:
            return True
        return deadline is not None and time.monotonic() + pause < deadline

    async def quiesce(self) -> None:
        """After a cancel: wait for a settle already running, so what it committed counts."""
        task, batch, self._in_flight = self._in_flight, self._in_flight_batch, None
        if task is None:
            return
        try:
            kept = await task
        except BaseException:  # it did not commit: still ours, for the last try to settle
            self.pending[:0] = batch
            return
        self.settled |= {o.message_id for o in batch}
        self._on_settled(kept)


def retry_pause(attempt: int) -> float:
    """Seconds before the next try of a settle: 0.1, 0.2, 0.4, 0.8, then 1 (an ack that
    waits is an email a kill would send again)."""
    return min(1.0, 0.1 * 2 ** (attempt - 1))


class Arrivals:
    """Send results as the provider gives them (`SendControl.on_result`): an accepted
    email goes to the settler at once, not when the rest of its slice is done; the other
    outcomes come with their slice (`rest`)."""

    def __init__(
        self,
        settler: Settler,
        messages: Sequence[queue.Message],
        decide: Callable[[queue.Message, SendResult], Outcome],
    ) -> None:
        self.settler = settler
        self.decide = decide
        self.by_id = {m.id: m for m in messages}
        self.told: set[int] = set()
        # one wake-up per arrival or finished task: no asyncio.wait over every slice
        # (its callbacks on each task, and a task for the event, cost more than the ack)
        self._poked = False
        self._wake: asyncio.Future[None] | None = None
        self._watched: set[asyncio.Task] = set()
        self._finished: set[asyncio.Task] = set()

    def __call__(self, item: OutgoingEmail, result: SendResult) -> None:
        if result.status is SendStatus.ACCEPTED:
            self.told.add(item.message_id)
            self.settler.offer([self.decide(self.by_id[item.message_id], result)])
            self._poke()

    def _poke(self, _task: asyncio.Task | None = None) -> None:
        self._poked = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _done(self, task: asyncio.Task) -> None:
        self._finished.add(task)
        self._poke()

    async def wait(self, tasks: set[asyncio.Task]) -> tuple[set[asyncio.Task], set[asyncio.Task]]:
        """(finished, still running) once a task ends, an email is accepted or a settle is due."""
        for task in tasks - self._watched:
            self._watched.add(task)
            task.add_done_callback(self._done)
        if not self._poked:
            loop = asyncio.get_running_loop()
            self._wake = loop.create_future()
            due_in = self.settler.due_in()
            timer = None if due_in is None else loop.call_later(due_in, self._poke)
            try:
                await self._wake
            finally:
                self._wake = None
                if timer is not None:
                    timer.cancel()
        self._poked = False
        finished = self._finished & tasks
        self._finished -= finished
        return finished, tasks - finished

    def rest(
        self, pairs: Iterable[tuple[tuple[queue.Message, OutgoingEmail], SendResult]]
    ) -> list[Outcome]:
        """The outcomes of a finished slice that were not told one by one."""
        return [self.decide(m, r) for (m, e), r in pairs if e.message_id not in self.told]


@dataclass(frozen=True)
class SettleRequest:
    token: Any  # the batch's lease token
    outcomes: list[Outcome]
    now: datetime | None


# longest wait for the answer to a trip of acks on the event loop
TRIP_TIMEOUT = 10.0

# one trip: settle these requests (in a worker thread), a result or an error for each
Trip = Callable[[list[SettleRequest]], Coroutine[Any, Any, list["list[Outcome] | Exception"]]]


class SettleLine:
    """One trip to the database at a time for all of a dispatcher's batches; settles that
    arrive meanwhile wait for the next trip and share it (one event loop only).

    A trip of acks alone (nearly every trip) runs on the event loop over the line's own
    autocommit connection: no thread hop, and no handing the GIL back and forth with a
    worker thread, which had cost more CPU than the ack itself. Any other trip goes to
    `threaded` (the pool, in a worker thread)."""

    def __init__(self, threaded: Trip, url: str | None = None) -> None:
        self._threaded = threaded
        self._url = url  # None: every trip is threaded
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._suspect = False  # a trip was cancelled mid-query: do not reuse the connection
        self._waiting: list[tuple[SettleRequest, asyncio.Future[list[Outcome]]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.trips = 0

    async def aclose(self) -> None:
        conn, self._conn, self._suspect = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _trip(self, requests: list[SettleRequest]) -> list[list[Outcome] | Exception]:
        acks_only = all(o.action is Action.SENT for r in requests for o in r.outcomes)
        if self._url is None or not acks_only:
            return await self._threaded(requests)
        leases = [(o.message_id, r.token) for r in requests for o in r.outcomes]
        conn = await self._connection(self._url)
        try:
            async with asyncio.timeout(TRIP_TIMEOUT):
                done = set(await queue.ack_many_async(conn, leases, now=requests[0].now))
        except TimeoutError:  # a dead network path: every batch's settles wait on this one
            await self.aclose()
            raise DatabaseUnavailable(f"no answer to a settle within {TRIP_TIMEOUT:g}s") from None
        except psycopg.Error:
            await self.aclose()  # the next trip starts on a new connection
            raise
        return [_kept(r.outcomes, done) for r in requests]

    async def _connection(self, url: str) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None and (self._suspect or self._conn.closed or has_input(self._conn)):
            await self.aclose()  # a restart's notice or the end of the stream: replace it
        if self._conn is None:
            try:
                self._conn = await psycopg.AsyncConnection.connect(
                    url, autocommit=True, connect_timeout=2
                )
            except psycopg.OperationalError:
                raise DatabaseUnavailable(f"cannot connect to {redact_url(url)}") from None
        return self._conn

    async def settle(self, token: Any, outcomes: list[Outcome], now: datetime | None) -> Any:
        """The outcomes still leased to `token` once committed; raises what the trip raised."""
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._waiting.append((SettleRequest(token, outcomes, now), future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                results = await self._trip([r for r, _ in group])
            except Exception as exc:  # the whole trip failed: each settle retries on its own
                results = [exc] * len(group)
            except BaseException as exc:  # cancelled: nothing is known to have committed
                self._suspect = True
                waiting, self._waiting = self._waiting, []
                for _, future in group + waiting:
                    if not future.done():
                        future.set_exception(exc)
                raise
            self.trips += 1
            for (_, future), result in zip(group, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def settle_trip(conn: Connection, requests: list[SettleRequest]) -> list[list[Outcome] | Exception]:
    """Settle several batches' outcomes on one connection: acks alone (nearly always) in
    one statement; otherwise batch by batch, a database error failing only its own."""
    if all(o.action is Action.SENT for r in requests for o in r.outcomes):
        leases = [(o.message_id, r.token) for r in requests for o in r.outcomes]
        done = set(queue.ack_many(conn, leases, now=requests[0].now))
        return [_kept(r.outcomes, done) for r in requests]
    results: list[list[Outcome] | Exception] = []
    for r in requests:
        try:
            results.append(settle_outcomes(conn, r.token, r.outcomes, r.now))
        except Exception as exc:  # this batch's error only: the others' stand
            results.append(exc)
    return results


def _kept(outcomes: list[Outcome], done: set[int]) -> list[Outcome]:
    lost = [o.message_id for o in outcomes if o.message_id not in done]
    if lost:
        log.warning("lease lost before settling messages %s (another consumer took them)", lost)
    return [o for o in outcomes if o.message_id in done]


def settle_outcomes(
    conn: Connection, token: Any, outcomes: list[Outcome], now: datetime | None = None
) -> list[Outcome]:
    """Apply outcomes atomically, one statement per kind; keep the ones still leased to
    us (a guarded update skips what another consumer took over). On an autocommit
    connection a settle of one kind (nearly always: accepted emails) is one round trip."""
    by = {a: [o for o in outcomes if o.action is a] for a in Action}
    several = sum(1 for kind in by.values() if kind) > 1
    with conn.transaction() if several or not conn.autocommit else contextlib.nullcontext():
        done = _settle_kinds(conn, token, by, now)
    return _kept(outcomes, done)


def _settle_kinds(
    conn: Connection, token: Any, by: dict[Action, list[Outcome]], now: datetime | None
) -> set[int]:
    done: set[int] = set()
    done |= set(queue.ack(conn, token, [o.message_id for o in by[Action.SENT]], now=now))
    retries = [queue.Retry(o.message_id, o.error or "", o.delay or 0) for o in by[Action.RETRIED]]
    done |= set(queue.retry_later_many(conn, token, retries, now=now))
    failures = [queue.Failure(o.message_id, o.error or "failed") for o in by[Action.DEAD_LETTERED]]
    done |= set(queue.dead_letter_many(conn, token, failures, now=now))
    done |= set(queue.release(conn, token, [o.message_id for o in by[Action.RELEASED]], now=now))
    skips = [queue.Failure(o.message_id, o.error or "skipped") for o in by[Action.SKIPPED]]
    done |= set(queue.skip_many(conn, token, skips, now=now))
    return done
