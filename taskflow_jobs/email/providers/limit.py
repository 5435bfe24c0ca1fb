"""How many sends a provider has in flight, with urgent sends served first.

A bulk batch starts hundreds of sends that queue for the provider's few slots. A plain
semaphore serves them first come, first served, so a signup's welcome email started a
moment later waits for all of them. Here a waiting urgent send (a transactional message)
takes the next free slot; bulk still gets every `bulk_share`-th slot while both wait, so a
flood of transactional mail slows bulk down but cannot stop it.

`hold_bulk` is the express lane's time slice: while it sends, no new bulk send starts
(the machine's CPU, the database and the provider's connections are the transactional
message's), for at most the given seconds per hold; after a hold, bulk sends for at least
as long as the hold lasted before the next one, so bulk cannot be starved either.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

# while urgent and bulk sends both wait, one slot in this many goes to bulk
BULK_SHARE = 10


class LaneLimit:
    """A semaphore with two queues of waiters, urgent first (one event loop only)."""

    def __init__(self, size: int, bulk_share: int = BULK_SHARE) -> None:
        self.size = size
        self.bulk_share = max(1, bulk_share)
        self._free = size
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}
        self._urgent_in_a_row = 0
        self._bulk_may_send = asyncio.Event()
        self._bulk_may_send.set()
        self._hold_ends: asyncio.TimerHandle | None = None
        self._held_at = 0.0
        self._no_hold_before = 0.0

    @property
    def in_flight(self) -> int:
        return self.size - self._free

    def waiting(self, urgent: bool) -> int:
        return sum(not f.done() for f in self._waiting[urgent])

    @contextlib.asynccontextmanager
    async def slot(self, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent)
        try:
            yield
        finally:
            self.release()

    def hold_bulk(self, seconds: float) -> None:
        """No new bulk send starts until `release_bulk`, or `seconds` from now at most."""
        loop = asyncio.get_running_loop()
        if self._hold_ends is not None or loop.time() < self._no_hold_before:
            return  # a hold runs (holds do not add up), or it is bulk's turn
        self._held_at = loop.time()
        self._bulk_may_send.clear()
        self._hold_ends = loop.call_later(seconds, self.release_bulk)

    def release_bulk(self) -> None:
        if self._hold_ends is None:
            return
        self._hold_ends.cancel()
        self._hold_ends = None
        now = asyncio.get_running_loop().time()
        self._no_hold_before = now + (now - self._held_at)
        self._bulk_may_send.set()

    async def acquire(self, urgent: bool = False) -> None:
        await self._acquire(urgent)
        if not urgent and not self._bulk_may_send.is_set():
            try:
                await self._bulk_may_send.wait()
            except asyncio.CancelledError:
                self.release()
                raise

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not self.waiting(True) and not self.waiting(False):
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[urgent].append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot came with the cancel: hand it on
            raise

    def release(self) -> None:
        """Hand the slot to the next waiter, or free it."""
        while (future := self._next()) is not None:
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

    def _next(self) -> asyncio.Future[None] | None:
        urgent, bulk = self._waiting[True], self._waiting[False]
        while urgent and urgent[0].done():
            urgent.popleft()
        while bulk and bulk[0].done():
            bulk.popleft()
        if urgent and (not bulk or self._urgent_in_a_row < self.bulk_share - 1):
            self._urgent_in_a_row += 1
            return urgent.popleft()
        if bulk:
            self._urgent_in_a_row = 0
            return bulk.popleft()
        return None
