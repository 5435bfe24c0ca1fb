"""The provider's send slots: urgent (transactional) sends first, bulk never starved."""

from __future__ import annotations

import asyncio

from taskflow_jobs.email.providers.limit import LaneLimit


async def _order(limit: LaneLimit, lanes: list[bool]) -> list[int]:
    """Hold every slot, queue one waiter per lane entry, then let them through one by one."""
    served: list[int] = []
    for _ in range(limit.size):
        await limit.acquire()

    async def wait(number: int, urgent: bool) -> None:
        async with limit.slot(urgent):
            served.append(number)

    tasks = [asyncio.create_task(wait(n, urgent)) for n, urgent in enumerate(lanes)]
    await asyncio.sleep(0)
    for _ in range(limit.size):
        limit.release()
    await asyncio.gather(*tasks)
    return served


def test_an_urgent_send_overtakes_the_bulk_sends_waiting() -> None:
    lanes = [False] * 5 + [True, True]
    served = asyncio.run(_order(LaneLimit(1), lanes))
    assert served == [5, 6, 0, 1, 2, 3, 4]


def test_bulk_gets_a_share_of_the_slots_while_urgent_sends_flood() -> None:
    lanes = [False] * 3 + [True] * 12
    served = asyncio.run(_order(LaneLimit(1, bulk_share=4), lanes))
    urgent = set(range(3, 15))
    pattern = ["u" if n in urgent else "b" for n in served]
    assert "".join(pattern) == "uuub" * 3 + "uuu"


def test_a_cancelled_waiter_gives_its_slot_on() -> None:
    async def scenario() -> int:
        limit = LaneLimit(1)
        await limit.acquire()
        gone = asyncio.create_task(limit.acquire(urgent=True))
        kept = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        limit.release()
        await asyncio.wait_for(kept, 1)
        limit.release()
        return limit.in_flight

    assert asyncio.run(scenario()) == 0
