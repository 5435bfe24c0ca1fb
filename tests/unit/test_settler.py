"""The settler's timing (pure logic): an outcome after a quiet spell is committed at once,
a storm's at most once per interval, and `every` outcomes do not wait for the interval."""

from __future__ import annotations

import asyncio

import pytest

from taskflow_jobs.email.outcomes import Action, Outcome
from taskflow_jobs.email.worker.settle import Settler


def outcome(message_id: int) -> Outcome:
    return Outcome(message_id, "welcome_email", 1, Action.SENT)


def make(commits: list[list[int]], every: int = 50, interval: float = 0.2) -> Settler:
    async def settle(outcomes: list[Outcome]) -> list[Outcome]:
        commits.append([o.message_id for o in outcomes])
        return outcomes

    return Settler(
        settle, lambda kept: None, every=every, interval=interval, attempts=1, retry_errors=()
    )


def test_after_a_quiet_spell_an_outcome_is_due_at_once_then_the_interval_holds() -> None:
    commits: list[list[int]] = []
    settler = make(commits)
    assert settler.due_in() is None, "nothing waits"

    async def scenario() -> None:
        settler.offer([outcome(1)])
        assert settler.due_in() == 0.0, "the first one after a quiet spell"
        await settler.flush_if_due()
        settler.offer([outcome(2)])
        settler.offer([outcome(3)])
        due = settler.due_in()
        assert due is not None and 0.1 < due <= 0.2, "the next waits out the interval"
        await settler.flush_if_due()
        assert commits == [[1]], "not due yet"
        await asyncio.sleep(due)
        await settler.flush_if_due()

    asyncio.run(scenario())
    assert commits == [[1], [2, 3]], "grouped"


def test_every_outcomes_are_committed_without_waiting_for_the_interval() -> None:
    commits: list[list[int]] = []
    settler = make(commits, every=3, interval=10)

    async def scenario() -> None:
        await settler.add([outcome(1)])
        await settler.add([outcome(2)])  # inside the interval of the first settle
        await settler.add([outcome(3)])
        await settler.add([outcome(4)])

    asyncio.run(scenario())
    assert commits == [[1, 2, 3]], commits
    assert [o.message_id for o in settler.pending] == [4]


class Down(Exception):
    """The database went away."""


def test_a_cancel_while_a_failed_settle_waits_to_retry_keeps_its_outcomes() -> None:
    """Cancelled in the pause between two tries: the outcomes are still ours, so the
    batch's last try can ack them (were they dropped, the batch would release them and
    every accepted email among them would be sent again)."""
    tries: list[int] = []

    async def settle(outcomes: list[Outcome]) -> list[Outcome]:
        tries.append(len(outcomes))
        raise Down()

    settler = Settler(
        settle, lambda kept: None, every=50, interval=0, attempts=3, retry_errors=(Down,)
    )

    async def scenario() -> None:
        settler.offer([outcome(1), outcome(2)])
        flushing = asyncio.create_task(settler.flush())
        while not tries:
            await asyncio.sleep(0.001)
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        await settler.quiesce()

    asyncio.run(scenario())
    assert tries == [2], "cancelled in the pause before the second try"
    assert [o.message_id for o in settler.pending] == [1, 2]
    assert not settler.settled and not settler.gave_up


def test_a_settle_that_fails_after_a_cancel_leaves_its_outcomes_for_the_last_try() -> None:
    async def scenario() -> Settler:
        gate = asyncio.Event()

        async def settle(outcomes: list[Outcome]) -> list[Outcome]:
            await gate.wait()
            raise Down()

        settler = Settler(
            settle, lambda kept: None, every=50, interval=0, attempts=3, retry_errors=(Down,)
        )
        settler.offer([outcome(1), outcome(2)])
        flushing = asyncio.create_task(settler.flush())
        await asyncio.sleep(0.01)  # the settle is in flight (shielded)
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        gate.set()
        await settler.quiesce()
        return settler

    settler = asyncio.run(scenario())
    assert [o.message_id for o in settler.pending] == [1, 2]
    assert not settler.settled
