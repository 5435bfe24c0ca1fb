"""`taskflow-jobs consume`: the long-running, low-latency email consumer.

A Prefect deployment starts in ~13 s (worker poll + subprocess); a signup email should
leave in milliseconds. So this process keeps a LISTEN connection, a connection pool and
the provider's HTTP client open, and when work appears it runs a burst: batches while
work keeps arriving, ending after an idle period. Delivery never waits for Prefect: each
burst is reported by the `Observer` from a background thread (an `email-dispatch` flow
run per burst), and while Prefect is unreachable the bursts go on and the outage is
reported when it is back.

SIGTERM / SIGINT: stop claiming, let sends in flight finish for EMAIL_SHUTDOWN_GRACE
seconds, release whatever is still held, exit 0. A second signal skips the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from taskflow_jobs.backoff import exponential_ceiling
from taskflow_jobs.email.outcomes import DispatchStats, Outcome
from taskflow_jobs.email.providers import Provider
from taskflow_jobs.email.providers.limit import LaneLimit
from taskflow_jobs.email.worker.batch import Dispatcher, Ticket
from taskflow_jobs.email.worker.express import BesideExpress, ExpressLane
from taskflow_jobs.email.worker.observer import Observer
from taskflow_jobs.email.worker.run import RunPlan, run_dispatch
from taskflow_jobs.jobs.wakeup import wait_for
from taskflow_jobs.settings import Settings

log = logging.getLogger(__name__)


def consumer_label() -> str:
    return f"consume@{socket.gethostname()}:{os.getpid()}"


def listen_plan(settings: Settings) -> RunPlan:
    return RunPlan(
        budget=settings.email_consume_budget,
        concurrency=settings.email_concurrency,
        listen=True,
        idle_timeout=settings.email_idle_timeout,
        window=settings.email_batch_window,
        poll_interval=settings.email_poll_interval,
    )


async def wait_for_work(dispatcher: Dispatcher, poll_interval: float) -> bool:
    """Sleep until a NOTIFY, the next delayed message, or the poll interval; True if work."""
    with dispatcher.waker.subscribe() as wake:
        if await dispatcher.visible(1):
            return True
        upcoming = await dispatcher.next_visible_in()
        timeout = poll_interval if upcoming is None else min(poll_interval, upcoming + 0.01)
        await wait_for(wake, timeout)
    return not dispatcher.stopping and await dispatcher.visible(1) > 0


class Consumer:
    def __init__(
        self,
        settings: Settings,
        url: str,
        observer: Observer | None = None,
        *,
        provider: Provider | None = None,
        latest_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.latest_settings = latest_settings  # refreshed in the background
        # transactional messages never wait for a bulk batch in flight (express.py)
        express = bool(settings.email_express_batch) and provider is None
        self.dispatcher = (BesideExpress if express else Dispatcher)(
            settings, url, provider=provider
        )
        slots = getattr(self.dispatcher.provider, "limit", None)
        self.express = (
            ExpressLane(
                settings,
                url,
                self._express_outcomes,
                slots if isinstance(slots, LaneLimit) else None,
            )
            if express
            else None
        )
        self.stats: DispatchStats | None = None  # the burst being reported
        self.unreported: list[Outcome] = []  # the express lane's, between bursts
        self.observer = observer
        self.current: asyncio.Task[Any] | None = None
        self.runs = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_before_start = False  # a signal arrived before the loop existed

    def stop(self) -> None:
        """First call: graceful stop. Second call: cancel the run now (it releases)."""
        if self.dispatcher.stopping and self.current is not None:
            log.warning("second stop signal: cancelling the current run")
            self.current.cancel()
        self.dispatcher.request_stop()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.dispatcher.open(listen=True)
        if self.express is not None:
            await self.express.start()
        freeze_heap()
        if self.stop_before_start:
            self.dispatcher.request_stop()
        log.info(
            "consuming %s with provider %s (batch %d, concurrency %d)",
            self.dispatcher.queue,
            self.dispatcher.provider.name,
            self.dispatcher.batch_size,
            self.settings.email_concurrency,
        )
        failures = 0
        if self.observer is not None:
            self.observer.start()
        try:
            while not self.dispatcher.stopping:
                try:
                    poll = self.settings.email_poll_interval
                    if not self.unreported and not await wait_for_work(self.dispatcher, poll):
                        continue
                    await self._one_run()
                    failures = 0
                except Exception as exc:  # keep consuming; the queue keeps the messages
                    failures += 1
                    delay = exponential_ceiling(failures, 1.0, 60.0)
                    log.error(
                        "email dispatch failed (%s: %s); trying again in %.0fs",
                        type(exc).__name__,
                        str(exc)[:300],
                        delay,
                    )
                    await wait_for(self.dispatcher.stop_event, delay)
        finally:
            if self.express is not None:
                await self.express.stop(self.settings.email_shutdown_grace + 5)
            await self.dispatcher.close()
            if self.observer is not None:
                await asyncio.to_thread(self.observer.stop)
            log.info("consumer stopped after %d bursts", self.runs)

    async def burst(self) -> DispatchStats:
        """Batches until idle or the budget ends; the observer reports it to Prefect."""
        await self._follow_settings()
        observed = self.observer.burst_started() if self.observer is not None else None
        stats = observed.stats if observed is not None else DispatchStats()
        self.stats = stats
        if self.unreported:
            stats.record(self.unreported)
            self.unreported = []

        async def run_batch(window: float, _number: int, ticket: Ticket) -> Any:
            return await self.dispatcher.run_batch(window, stats, ticket)

        error: BaseException | None = None
        try:
            await run_dispatch(self.dispatcher, run_batch, listen_plan(self.settings), stats)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.stats = None
            if observed is not None and self.observer is not None:
                self.observer.burst_ended(observed, error)
            log.info("burst done: %s", stats.summary())
        return stats

    async def _follow_settings(self) -> None:
        latest = self.latest_settings() if self.latest_settings is not None else self.settings
        if latest is self.settings or latest == self.settings:
            return
        if latest.database_url != self.settings.database_url:
            log.warning("the database setting changed: restart consume to use it")
        await self.dispatcher.reconfigure(latest)
        if self.express is not None:
            self.express.reconfigure(latest)
        self.settings = latest
        log.info("now sending with provider %s", self.dispatcher.provider.name)

    def _express_outcomes(self, outcomes: list[Outcome]) -> None:
        """The express lane's settled outcomes: counted in the burst being reported, or
        in one that starts for them (the lane took the message the burst would have)."""
        if self.stats is not None:
            self.stats.record(outcomes)
        else:
            self.unreported += outcomes
            self.dispatcher.waker.fire()

    async def _one_run(self) -> None:
        """One burst; on a stop request give it the grace period, then cancel it."""
        self.runs += 1
        self.current = asyncio.create_task(self.burst())
        stopping = asyncio.create_task(self.dispatcher.stop_event.wait())
        try:
            await asyncio.wait({self.current, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not self.current.done():
                grace = self.settings.email_shutdown_grace
                done, _ = await asyncio.wait({self.current}, timeout=grace)
                if not done:
                    log.warning("sends still in flight after %.0fs: releasing them", grace)
                    self.current.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.current
        finally:
            stopping.cancel()
            self.current = None
        if self.runs == 1:
            freeze_heap()  # what the first burst imported and compiled lives as long


def freeze_heap() -> None:
    """Keep the garbage collector off the objects that live as long as the process.

    Prefect, pydantic, httpx and the templates are a few hundred thousand objects that a
    full collection walks every time: with a bulk send under way that is a pause of every
    thread (the express lane's too) of 150-450 ms every few seconds, measured. Frozen,
    they are never walked again (nor freed: they would not be anyway)."""
    gc.collect()
    gc.freeze()


def run_until_signalled(consumer: Consumer) -> None:
    """Run `consumer` until SIGTERM / SIGINT, then let it stop gracefully.

    The event loop runs in a worker thread and the signals are handled here, in the main
    thread, so no library that installs its own handlers (Prefect's flow engine raises
    `TerminationSignal` wherever the code happens to be) can abandon sends in flight
    instead of finishing or releasing them.
    """
    failure: list[BaseException] = []

    def work() -> None:
        try:
            asyncio.run(consumer.run())
        except BaseException as exc:  # re-raised in the main thread
            failure.append(exc)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        loop = consumer.loop
        if loop is None:
            consumer.stop_before_start = True
        elif not loop.is_closed():
            loop.call_soon_threadsafe(consumer.stop)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=work, name="email-consumer")
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise failure[0]
