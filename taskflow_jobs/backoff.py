"""Retry policy for email jobs: exponential backoff, capped, with full jitter.

Full jitter (a uniform delay between 0 and the exponential ceiling) spreads the retries of
a batch that failed together, so a provider that recovers is not hit by all of them at
once. A provider's own `Retry-After` is a floor: retrying earlier only earns another 429.
Whether a failure is worth retrying at all is decided where it happens (the providers
classify it); this module only decides *when*, and when to give up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_rng = random.SystemRandom()


def exponential_ceiling(attempt: int, base: float, cap: float) -> float:
    """`base * 2**(attempt-1)`, capped: the longest delay after failed attempt `attempt`."""
    exponent = max(0, attempt - 1)
    if exponent > 60:  # 2**60 seconds is far past any cap; avoid float overflow
        return cap
    return min(cap, base * 2**exponent)


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from [0, exponential_ceiling(attempt)]."""
    return (rng or _rng).uniform(0.0, exponential_ceiling(attempt, base, cap))


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a transiently failed message, and when to stop."""

    base: float
    cap: float
    max_attempts: int

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based); honours Retry-After."""
        delay = full_jitter(attempt, self.base, self.cap, rng)
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.cap))
        return delay

    def exhausted(self, attempt: int, message_max_attempts: int) -> bool:
        """True when attempt `attempt` was the last one allowed.

        The message's own limit was fixed when it was enqueued; the configured limit
        can only lower it (raising it takes effect for new messages through the queue's
        default, see `dispatch.sync_queue_settings`).
        """
        return attempt >= min(self.max_attempts, message_max_attempts)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from an HTTP `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0
    return seconds
