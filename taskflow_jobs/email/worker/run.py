"""One dispatch run: start batches while there is work, up to a concurrency, until done.

Two modes share this loop:

- drain (the scheduled / event-triggered `email-dispatch` run): start as many batches as
  the visible messages fill, keep going until nothing is visible or the time budget ends.
- listen (`consume`): the same, but when the queue is empty wait for a NOTIFY (or a
  timeout, for delayed and expired messages) and end only after `idle_timeout` without
  work. A batch started here stays open for `window` seconds and takes what arrives, so
  under a steady trickle one batch at a time absorbs the traffic; another starts only
  when messages pile up faster than the open batch takes them.

`run_batch` is injected: the flow passes its Prefect task, tests may pass the plain
`Dispatcher.run_batch`. A batch that fails (after its Prefect retries), or a database
error of the loop itself, stops new batches; the run waits for the others (cancelling
them would re-send what they sent and did not settle yet) and raises the first failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from taskflow_jobs.email.outcomes import DispatchStats
from taskflow_jobs.email.worker.batch import Dispatcher, Ticket

log = logging.getLogger(__name__)

# (window seconds, batch number, ticket) -> the batch's summary
RunBatch = Callable[[float, int, Ticket], Coroutine[Any, Any, Any]]


@dataclass(frozen=True)
class RunPlan:
    budget: float
    concurrency: int
    listen: bool = False
    idle_timeout: float = 0.0
    window: float = 0.0
    poll_interval: float = 5.0


def _claimed(result: Any) -> int:
    if isinstance(result, dict):
        return int(result.get("claimed", 0))
    return int(getattr(result, "claimed", 0))


async def run_dispatch(
    dispatcher: Dispatcher, run_batch: RunBatch, plan: RunPlan, stats: DispatchStats
) -> None:
    started = time.monotonic()
    deadline = started + plan.budget
    last_work = started
    running: dict[asyncio.Task[Any], Ticket] = {}
    failure: BaseException | None = None
    numbered = 0
    batch_size = dispatcher.batch_size
    # under a trickle, a second batch only starts when this many messages wait
    pile_up = max(1, batch_size // (2 * plan.concurrency))

    with dispatcher.waker.subscribe() as wake:
        try:
            while True:
                wake.clear()
                now = time.monotonic()
                launching = failure is None and not dispatcher.stopping and now < deadline
                free = plan.concurrency - len(running)
                if launching and free > 0:
                    # messages that batches started a moment ago are about to claim
                    unclaimed = sum(not t.claimed.is_set() for t in running.values())
                    try:
                        visible = await dispatcher.visible((free + unclaimed) * batch_size)
                    except Exception as error:
                        # the database went away: start no batch, and let the running
                        # ones finish and settle what they sent (a cancel would re-send it)
                        log.error("counting visible messages failed: %s: %s",
                                  type(error).__name__, error)  # fmt: skip
                        failure = failure or error
                        continue
                    visible = max(0, visible - unclaimed * batch_size)
                    if dispatcher.open_batches == 0:
                        wanted = min(free, math.ceil(visible / batch_size))
                    else:
                        wanted = 1 if visible >= pile_up else 0
                    for _ in range(wanted):
                        numbered += 1
                        window = min(plan.window, deadline - now) if plan.listen else 0.0
                        ticket = Ticket()
                        task = asyncio.create_task(run_batch(max(0.0, window), numbered, ticket))
                        running[task] = ticket
                    if wanted:
                        last_work = now
                if running:
                    timeout = plan.poll_interval
                elif not launching or not plan.listen:
                    break
                else:
                    idle_left = plan.idle_timeout - (now - last_work)
                    if idle_left <= 0:
                        break
                    timeout = min(idle_left, plan.poll_interval, deadline - now)
                    upcoming = await dispatcher.next_visible_in()
                    if upcoming is not None:
                        timeout = min(timeout, upcoming + 0.01)
                done = await _wait_first(running, wake, max(0.0, timeout))
                for task in done:
                    running.pop(task)
                    stats.batches += 1
                    exc = task.exception()
                    if exc is not None:
                        stats.failed_batches += 1
                        stats.errors.append(f"{type(exc).__name__}: {exc}"[:500])
                        log.error("email batch failed: %s: %s", type(exc).__name__, exc)
                        failure = failure or exc
                    elif _claimed(task.result()):
                        last_work = time.monotonic()
        except BaseException:
            for task in running:
                task.cancel()
            raise
        finally:
            if running:
                results = await asyncio.gather(*running, return_exceptions=True)
                stats.batches += len(results)
                for result in results:
                    if isinstance(result, BaseException):
                        stats.failed_batches += 1
                        stats.errors.append(f"{type(result).__name__}: {result}"[:500])
    if failure is not None:
        raise failure


async def _wait_first(
    running: dict[asyncio.Task[Any], Ticket], wake: asyncio.Event, timeout: float
) -> set[asyncio.Task[Any]]:
    """Wait for a batch to finish, a wake-up, or the timeout; return the finished batches."""
    waiter = asyncio.create_task(wake.wait())
    try:
        done, _ = await asyncio.wait(
            {*running, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    return {task for task in done if task is not waiter}
