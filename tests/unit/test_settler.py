"""The settler's timing (pure logic): an outcome after a quiet spell is committed at once,
a storm's at most once per interval, and `every` outcomes do not wait for the interval."""

from __future__ import annotations

import asyncio

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
