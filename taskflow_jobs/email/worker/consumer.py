"""`taskflow-jobs consume`: the long-running, low-latency email consumer.

A Prefect deployment starts in ~13 s (worker poll + subprocess); a signup email should
leave in milliseconds. So this process keeps a LISTEN connection, a connection pool and
the provider's HTTP client open, and when work appears it runs an `email-dispatch` flow
run *in this process* (about 0.15 s to create) that keeps going while work keeps
arriving and ends after an idle period, so every email still shows up in the Prefect UI
without paying a flow run per message.

SIGTERM / SIGINT: stop claiming, let sends in flight finish for EMAIL_SHUTDOWN_GRACE
seconds, release whatever is still held, exit 0. A second signal skips the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from taskflow_jobs.backoff import exponential_ceiling
from taskflow_jobs.email.providers import Provider
from taskflow_jobs.email.worker.batch import Dispatcher
from taskflow_jobs.email.worker.sharing import sharing
from taskflow_jobs.jobs.wakeup import wait_for
from taskflow_jobs.settings import Settings

log = logging.getLogger(__name__)

RunFlow = Callable[[], Coroutine[Any, Any, Any]]


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
        run_flow: RunFlow,
        *,
        provider: Provider | None = None,
    ) -> None:
        self.settings = settings
        self.dispatcher = Dispatcher(settings, url, provider=provider)
        self.run_flow = run_flow
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
        try:
            with sharing(self.dispatcher):
                while not self.dispatcher.stopping:
                    try:
                        if not await wait_for_work(
                            self.dispatcher, self.settings.email_poll_interval
                        ):
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
            await self.dispatcher.close()
            log.info("consumer stopped after %d flow runs", self.runs)

    async def _one_run(self) -> None:
        """One flow run; on a stop request give it the grace period, then cancel it."""
        self.runs += 1
        self.current = asyncio.create_task(self.run_flow())
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


def run_until_signalled(consumer: Consumer) -> None:
    """Run `consumer` until SIGTERM / SIGINT, then let it stop gracefully.

    The event loop runs in a worker thread and the signals are handled here, in the main
    thread: Prefect's flow engine replaces the main thread's SIGTERM handler during every
    flow run with one that raises `TerminationSignal` wherever the code happens to be,
    which would abandon sends in flight instead of finishing or releasing them. Outside
    the main thread Prefect leaves signals alone.
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
