"""The settle line (pure logic): settles that arrive while a trip is under way share the
next trip; a failed trip fails each of its settles; each settle gets its own result."""

from __future__ import annotations

import asyncio

import pytest

from taskflow_jobs.email.outcomes import Action, Outcome
from taskflow_jobs.email.worker.settle import SettleLine, SettleRequest


def outcomes(*ids: int) -> list[Outcome]:
    return [Outcome(i, "welcome_email", 1, Action.SENT) for i in ids]


def test_settles_arriving_during_a_trip_share_the_next_one() -> None:
    trips: list[list[str]] = []

    async def trip(requests: list[SettleRequest]) -> list[list[Outcome] | Exception]:
        trips.append([r.token for r in requests])
        await asyncio.sleep(0.05)  # the database's round trip
        return [r.outcomes for r in requests]

    async def scenario() -> list[list[Outcome]]:
        line = SettleLine(trip)
        first = asyncio.create_task(line.settle("a", outcomes(1), None))
        await asyncio.sleep(0.01)  # the first trip is under way
        rest = [
            asyncio.create_task(line.settle(t, outcomes(n), None)) for n, t in ((2, "b"), (3, "c"))
        ]
        results = await asyncio.gather(first, *rest)
        assert line.trips == 2
        return results

    results = asyncio.run(scenario())
    assert trips == [["a"], ["b", "c"]], "b and c waited for a's trip, then went together"
    assert [[o.message_id for o in r] for r in results] == [[1], [2], [3]]


def test_a_failed_trip_fails_each_of_its_settles_and_the_next_trip_runs() -> None:
    calls = 0

    async def trip(requests: list[SettleRequest]) -> list[list[Outcome] | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database restarting")
        return [r.outcomes for r in requests]

    async def scenario() -> None:
        line = SettleLine(trip)
        settles = [line.settle(t, outcomes(n), None) for n, t in ((1, "a"), (2, "b"))]
        results = await asyncio.gather(*settles, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        again = await line.settle("a", outcomes(1), None)
        assert [o.message_id for o in again] == [1]

    asyncio.run(scenario())


def test_each_settle_gets_its_own_result_or_error() -> None:
    async def trip(requests: list[SettleRequest]) -> list[list[Outcome] | Exception]:
        return [ValueError("bad") if r.token == "bad" else r.outcomes for r in requests]

    async def scenario() -> None:
        line = SettleLine(trip)
        good, bad = await asyncio.gather(
            line.settle("good", outcomes(1), None),
            line.settle("bad", outcomes(2), None),
            return_exceptions=True,
        )
        assert [o.message_id for o in good] == [1]  # type: ignore[union-attr]
        assert isinstance(bad, ValueError)

    asyncio.run(scenario())


def test_a_cancelled_trip_fails_its_settles_instead_of_leaving_them_waiting() -> None:
    async def trip(requests: list[SettleRequest]) -> list[list[Outcome] | Exception]:
        await asyncio.sleep(10)
        return [r.outcomes for r in requests]

    async def scenario() -> None:
        line = SettleLine(trip)
        settle = asyncio.create_task(line.settle("a", outcomes(1), None))
        await asyncio.sleep(0.01)
        assert line._runner is not None
        line._runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(settle, 1)

    asyncio.run(scenario())
