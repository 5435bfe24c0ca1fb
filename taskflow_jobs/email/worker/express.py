"""The express lane of `consume`: transactional messages in a loop of their own.

A consumer's batches take up to EMAIL_BATCH_SIZE messages and work through them; with a
bulk send queued, every batch in flight is bulk, and a welcome email enqueued now would
wait until one of them ends. So `consume` also runs this lane: it claims only lane 0
(`welcome_email`, `task_assigned`, non-bulk `notification`), at most EMAIL_EXPRESS_BATCH
at a time, as soon as its own LISTEN connection hears of new messages.

It runs in a thread with its own event loop, dispatcher, database connections and
provider client: a bulk drain keeps the consumer's event loop busy (rendering, parsing,
settling hundreds of messages), and a welcome email that had to wait for each of that
loop's turns would wait tens of milliseconds per step. The batches still claim lane 0
first too, and send it ahead of bulk (`LaneLimit`), so a large transactional burst gets
the batches' throughput. Bulk keeps the batches; the lane takes at most a few slots of
the provider (EMAIL_EXPRESS_CONCURRENCY) and the same shared rate limit.

While the lane claims and sends, the batches start no new bulk send (`hold_bulk`: at most
MAX_HOLD at a time, then bulk gets at least as long): on a busy machine the CPU, the
database and the provider are the signup's for those few milliseconds.

Its outcomes are settled as they come (the same leases, pauses and outcomes as a batch)
and handed to the consumer's loop, which counts them in the burst it is reporting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from taskflow_jobs.backoff import exponential_ceiling
from taskflow_jobs.db import Connection
from taskflow_jobs.email.outcomes import BatchReport, DispatchStats, Outcome
from taskflow_jobs.email.providers import create_provider
from taskflow_jobs.email.providers.limit import LaneLimit
from taskflow_jobs.email.worker.batch import Dispatcher
from taskflow_jobs.jobs import queue
from taskflow_jobs.jobs.wakeup import wait_for
from taskflow_jobs.settings import Settings

log = logging.getLogger(__name__)

# The batches beside an express lane leave it a transactional message for this long (a
# batch that claimed a signup with 499 bulk messages would send it after their lookups);
# past it, a backlog of transactional mail gets the batches' throughput too.
LEAVE_FRESH = 1.0
# The longest one hold of the batches' bulk sends lasts.
MAX_HOLD = 0.25

OnOutcomes = Callable[[list[Outcome]], None]


class _Forwarded(DispatchStats):
    """Stats that hand each settled group of outcomes to the consumer's loop."""

    def __init__(self, forward: OnOutcomes) -> None:
        super().__init__()
        self.forward = forward

    def record(self, outcomes: list[Outcome]) -> None:
        self.forward(outcomes)


class BesideExpress(Dispatcher):
    """The batches' dispatcher of a consumer with an express lane."""

    def _claim(self, conn: Connection, limit: int) -> queue.Batch:
        timeout, now = self.visibility_timeout, self.clock()
        return queue.claim(conn, self.queue, limit, timeout, now=now, leave_fresh=LEAVE_FRESH)


class ExpressLane:
    def __init__(
        self,
        settings: Settings,
        url: str,
        on_outcomes: OnOutcomes,
        batches: LaneLimit | None = None,
    ) -> None:
        self.settings = settings
        self.batches = batches  # the batches' provider slots, in the consumer's loop
        self.url = url
        self.size = settings.email_express_batch
        self.on_outcomes = on_outcomes  # called in the consumer's loop
        self.claimed = 0
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._latest: Settings | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owner: asyncio.AbstractEventLoop | None = None
        self._dispatcher: Dispatcher | None = None
        self._thread: threading.Thread | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._retry_at = 0.0  # time.monotonic() before which the lane does not claim
        self.stats: DispatchStats = DispatchStats()

    # --- the consumer's side -------------------------------------------------------------

    async def start(self) -> None:
        """Start the lane's thread and wait until it listens (raises what stopped it)."""
        self._owner = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, name="email-express", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self.ready.wait, 60)
        if self.error is not None:
            raise self.error

    def reconfigure(self, settings: Settings) -> None:
        """New settings from the next claim on (a block edited in the UI)."""
        self._latest = settings

    async def stop(self, timeout: float) -> None:
        """Stop claiming; sends in flight finish (or are released) before the thread ends."""
        loop, dispatcher = self._loop, self._dispatcher
        if loop is not None and dispatcher is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                loop.call_soon_threadsafe(dispatcher.request_stop)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout)
            if self._thread.is_alive():
                log.warning("the express lane did not stop within %.0fs", timeout)
        log.info("express lane stopped after %d message(s)", self.claimed)

    def _forward(self, outcomes: list[Outcome]) -> None:
        self._in_owner(self.on_outcomes, outcomes)

    def _hold_bulk(self, hold: bool) -> None:
        if self.batches is not None:
            if hold:
                self._in_owner(self.batches.hold_bulk, MAX_HOLD)
            else:
                self._in_owner(self.batches.release_bulk)

    def _in_owner(self, fn: Callable[..., None], *args: object) -> None:
        owner = self._owner
        if owner is not None:
            with contextlib.suppress(RuntimeError):  # the consumer's loop has ended
                owner.call_soon_threadsafe(fn, *args)

    # --- the lane's thread ---------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to start(), or logged
            self.error = exc
            log.exception("the express lane stopped")
        finally:
            self.ready.set()

    def _claim(self, conn: Connection) -> queue.Batch:
        d = self._dispatcher
        assert d is not None
        return queue.claim(
            conn,
            d.queue,
            self.size,
            d.visibility_timeout,
            now=d.clock(),
            last_lane=queue.TRANSACTIONAL,
        )

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        settings = _lane_settings(self.settings)
        provider = create_provider(settings, database_url=self.url)
        d = self._dispatcher = Dispatcher(settings, self.url, provider=provider)
        await d.open(listen=True)
        self.stats = _Forwarded(self._forward)
        self.ready.set()
        try:
            with d.waker.subscribe() as wake:
                while not d.stopping:
                    wake.clear()
                    if self._latest is not None and not self._sending:
                        latest, self._latest = self._latest, None
                        await d.reconfigure(_lane_settings(latest))
                    if len(self._sending) >= d.settings.email_concurrency:
                        await asyncio.wait(self._sending, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    if (pause := self._retry_at - time.monotonic()) > 0:  # after a failure
                        await wait_for(d.stop_event, pause)
                        continue
                    self._hold_bulk(True)  # woken: likely a signup
                    try:
                        batch = await d._db(self._claim)
                    except Exception as exc:  # the messages stay queued
                        self._hold_bulk(False)
                        self._failed(exc)
                        continue
                    if batch.messages:  # sent and settled while the lane claims on
                        self.claimed += len(batch)
                        task = asyncio.create_task(self._send(batch))
                        self._sending.add(task)
                        task.add_done_callback(self._sent)
                        continue  # more may be waiting
                    if not self._sending:
                        self._hold_bulk(False)
                    await wait_for(wake, d.settings.email_poll_interval)
        finally:
            if self._sending:
                await asyncio.wait(self._sending)
            await d.close()

    async def _send(self, batch: queue.Batch) -> None:
        d = self._dispatcher
        assert d is not None
        report = BatchReport(claimed=len(batch), claims=1)
        async with d.provider.session() as session:
            await d._process(batch, session, report, self.stats)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not self._sending:
            self._hold_bulk(False)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:  # the unsettled ones were released
            self._failed(exc)
        else:
            self._failures, self._retry_at = 0, 0.0

    def _failed(self, exc: BaseException) -> None:
        """Claim no more for a while (backing off), as the consumer does after a failed run."""
        self._failures += 1
        delay = exponential_ceiling(self._failures, 0.5, 30.0)
        self._retry_at = time.monotonic() + delay
        log.error(
            "express lane: %s: %s; claiming again in %.1fs",
            type(exc).__name__,
            str(exc)[:300],
            delay,
        )


def _lane_settings(settings: Settings) -> Settings:
    """The lane's own dispatcher: a few provider slots, as many claims sending at once."""
    n = settings.email_express_concurrency
    return settings.model_copy(update={"sendgrid_concurrency": n, "email_concurrency": n})
