"""What becomes of one message of a batch: the pure decisions, kept apart from the I/O.

- a payload that does not parse                 -> dead letter with the reason
- the provider accepted it                      -> sent (ack)
- refused for good                              -> dead letter
- a transient failure                           -> retried after a jittered delay, or a
                                                   dead letter on its last attempt
- provider unavailable, or never tried          -> released (the attempt is not used)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from taskflow_jobs.backoff import RetryPolicy
from taskflow_jobs.email.compose import ParsedMessage
from taskflow_jobs.email.messages import InvalidMessage, parse_message
from taskflow_jobs.email.outcomes import Action, Outcome
from taskflow_jobs.email.providers import SendResult, SendStatus
from taskflow_jobs.jobs import queue


def dead_letter(message: queue.Message, reason: str) -> Outcome:
    return Outcome(message.id, message.type, message.attempt, Action.DEAD_LETTERED, reason)


def parse_all(
    messages: Sequence[queue.Message],
) -> tuple[list[tuple[queue.Message, ParsedMessage]], list[Outcome]]:
    """Parse every payload; the ones that do not parse become dead letters."""
    parsed, failed = [], []
    for message in messages:
        try:
            parsed.append((message, parse_message(message.payload)))
        except InvalidMessage as exc:
            failed.append(dead_letter(message, str(exc)))
    return parsed, failed


def decide(message: queue.Message, result: SendResult, policy: RetryPolicy) -> Outcome:
    """What to do with a message after its send result."""
    kind, attempt = message.type, message.attempt
    if result.status is SendStatus.ACCEPTED:
        outcome = Outcome(message.id, kind, attempt, Action.SENT)
    elif result.status is SendStatus.PERMANENT:
        outcome = dead_letter(message, result.error or "rejected by the provider")
    elif result.status is SendStatus.TRANSIENT:
        error = result.error or "transient failure"
        if policy.exhausted(attempt, message.max_attempts):
            limit = min(policy.max_attempts, message.max_attempts)
            reason = f"attempts exhausted ({attempt}/{limit}); last error: {error}"
            outcome = dead_letter(message, reason)
        else:
            delay = policy.delay(attempt, result.retry_after)
            outcome = Outcome(message.id, kind, attempt, Action.RETRIED, error, delay)
    else:
        outcome = Outcome(message.id, kind, attempt, Action.RELEASED, result.error)
    return replace(outcome, duration_ms=result.duration_ms)
