"""What happened to each message of a dispatch run, for logs, artifacts and events.

Outcomes are recorded the moment they are committed to the queue (ack, retry_later,
dead_letter, release), so a batch that fails half way still reports what it finished.
Nothing here holds a secret or a recipient address: only ids, types, attempts and the
classified error text.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger("taskflow_jobs.email.worker.batch")


class Action(StrEnum):
    SENT = "sent"
    RETRIED = "retried"
    DEAD_LETTERED = "dead-lettered"
    RELEASED = "released"
    SKIPPED = "skipped"  # finalised unsent: the recipient opted out or is suppressed


@dataclass(frozen=True)
class Outcome:
    message_id: int
    message_type: str | None
    attempt: int
    action: Action
    error: str | None = None
    delay: float | None = None
    duration_ms: float | None = None  # the provider's time for this email


@dataclass
class BatchReport:
    """One batch (one Prefect task run): what it claimed and what became of it."""

    claimed: int = 0
    claims: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    unavailable: str | None = None

    def summary(self) -> dict[str, Any]:
        counts = Counter(o.action.value for o in self.outcomes)
        return {"claimed": self.claimed, **{a.value: counts.get(a.value, 0) for a in Action}}


@dataclass
class DispatchStats:
    """Everything one dispatch run (one flow run) did, across its batches."""

    on_dead_letter: Callable[[Outcome], None] | None = None
    batches: int = 0
    failed_batches: int = 0
    counts: Counter = field(default_factory=Counter)
    problems: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    max_problems: int = 200

    def record(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self.counts[outcome.action.value] += 1
            if outcome.action is not Action.SENT and len(self.problems) < self.max_problems:
                self.problems.append(outcome)
            if outcome.action is Action.DEAD_LETTERED and self.on_dead_letter is not None:
                self.on_dead_letter(outcome)

    @property
    def sent(self) -> int:
        return self.counts[Action.SENT.value]

    def summary(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "failed_batches": self.failed_batches,
            **{a.value: self.counts[a.value] for a in Action},
        }

    def table(self) -> list[dict[str, Any]]:
        """Rows for the run's table artifact: the totals, then each message that was not sent."""
        rows: list[dict[str, Any]] = [
            {
                "message": "total",
                "type": "",
                "attempt": "",
                "outcome": action.value,
                "count": self.counts[action.value],
                "error": "",
            }
            for action in Action
        ]
        rows += [
            {
                "message": str(o.message_id),
                "type": o.message_type or "?",
                "attempt": o.attempt,
                "outcome": o.action.value,
                "count": 1,
                "error": (o.error or "") + (f" (retry in {o.delay:.1f}s)" if o.delay else ""),
            }
            for o in self.problems
        ]
        rows += [
            {
                "message": "batch",
                "type": "",
                "attempt": "",
                "outcome": "failed",
                "count": 1,
                "error": error,
            }
            for error in self.errors
        ]
        return rows


def log_outcomes(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        extra = {
            "message_id": o.message_id,
            "message_type": o.message_type,
            "attempt": o.attempt,
            "duration_ms": o.duration_ms,
        }
        if o.action is Action.SENT:
            log.debug("sent message %s", o.message_id, extra=extra)
        elif o.action is Action.RETRIED:
            log.info("message %s retries in %.1fs: %s", o.message_id, o.delay, o.error, extra=extra)
        elif o.action is Action.DEAD_LETTERED:
            log.warning("message %s dead-lettered: %s", o.message_id, o.error, extra=extra)
        else:
            log.info("message %s %s: %s", o.message_id, o.action.value, o.error, extra=extra)
