"""What a fault soak measured, from what it recorded: pure functions, no I/O.

Inputs are wall-clock times (`time.time()`): when each signup's INSERT was issued, when the
SendGrid stand-in accepted each copy of its email, and when each fault began and ended.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

IN_FLIGHT = 0.1  # seconds a request sent before a kill may still reach the provider


@dataclass(frozen=True)
class Fault:
    kind: str  # "kill", "pg-restart", "prefect-stop", "prefect-freeze"
    begin: float
    end: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def explain_duplicate(first_accept: float, faults: Iterable[Fault], bound: float) -> str | None:
    """Why an email was accepted twice, or None. At-least-once delivery re-sends an email
    only when the provider accepted it but its ack did not reach the database: PostgreSQL
    restarting around the accept (no ack can commit until it is back: the lease ran out,
    or a kill meanwhile re-sent it), or a consumer killed within `bound` seconds after the
    accept (before its next settle). The restart is checked first: it is why the ack had
    not committed when a kill came."""
    faults = list(faults)
    kills = [f.begin for f in faults if f.kind == "kill"]
    for fault in faults:
        if fault.kind == "pg-restart" and fault.begin - bound <= first_accept <= fault.end:
            # a restart alone re-sends nothing (the settle is retried while the lease
            # lasts); a kill before the ack could commit again does
            after = [k for k in kills if first_accept - IN_FLIGHT <= k <= fault.end + bound]
            return "pg-restart+kill" if after else "pg-restart"
    for fault in faults:
        # a request in flight when the kill lands is read by the provider just after it
        if fault.kind == "kill" and first_accept - IN_FLIGHT <= fault.begin <= first_accept + bound:
            return "kill"
    return None


def latency_summary(latencies: list[float]) -> dict[str, float | int]:
    if not latencies:
        return {"n": 0}
    return {
        "n": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


def ack_lag(accepted: dict[int, list[float]], acked: dict[int, float]) -> dict[str, float | int]:
    """Seconds from the provider's accept of the copy that was acked to the ack (the start
    of its settle transaction): the window in which a kill re-sends an email."""
    lags = []
    for message, at in acked.items():
        before = [t for t in accepted.get(message, []) if t <= at + 0.001]
        if before:
            lags.append(max(0.0, at - max(before)))
    return latency_summary(lags)


def recovery_seconds(
    points: list[tuple[float, float]], after: float, normal: float, window: float = 1.0
) -> float | None:
    """Seconds after `after` until signups are delivered at the normal pace again: the
    first window of `window` seconds of enqueues whose median latency is within `normal`.
    `points` are (enqueued at, latency), sorted by enqueue time."""
    times = [t for t, _ in points]
    start = bisect.bisect_left(times, after)
    for i in range(start, len(points)):
        begin = times[i]
        end = bisect.bisect_left(times, begin + window, lo=i)
        if end - i < 3:
            continue
        if statistics.median(lat for _, lat in points[i:end]) <= normal:
            return round(max(0.0, begin - after), 2)
    return None


def longest_gap(accepts: list[float], begin: float, end: float) -> float:
    """The longest time between accepted emails within [begin, end] (sorted accepts)."""
    inside = [
        begin,
        *accepts[bisect.bisect_left(accepts, begin) : bisect.bisect_right(accepts, end)],
        end,
    ]
    return round(max(b - a for a, b in zip(inside, inside[1:], strict=False)), 2)


def analyse(
    enqueued: Mapping[int, float],
    accepted: Mapping[int, list[float]],
    dead_lettered: set[int],
    still_queued: set[int],
    faults: list[Fault],
    outage: tuple[float, float],
    settle_bound: float,
) -> dict:
    """The soak's figures. `enqueued` maps every signup's message id to when its INSERT was
    issued; `accepted` maps message ids to the stand-in's 2xx answers (any order)."""
    firsts = {m: min(times) for m, times in accepted.items() if times}
    lost = sorted(m for m in enqueued if m not in firsts and m not in dead_lettered)
    duplicates = {m: sorted(accepted[m]) for m in enqueued if len(accepted.get(m, [])) > 1}
    reasons: dict[str, int] = {}
    unexplained = []
    for message, times in duplicates.items():
        reason = explain_duplicate(times[0], faults, settle_bound)
        if reason is None:
            unexplained.append(message)
        else:
            reasons[reason] = reasons.get(reason, 0) + 1
    extra_copies = sum(len(t) - 1 for t in duplicates.values())

    points = sorted((enqueued[m], firsts[m] - enqueued[m]) for m in enqueued if m in firsts)
    begin, end = outage
    phases = {
        "before": [lat for t, lat in points if t < begin],
        "during": [lat for t, lat in points if begin <= t < end],
        "after": [lat for t, lat in points if t >= end],
    }
    latency = {name: latency_summary(values) for name, values in phases.items()}
    before = phases["before"]
    p99_before = percentile(before, 0.99) if before else None
    p99_during = percentile(phases["during"], 0.99) if phases["during"] else None
    normal = 2 * max(0.05, percentile(before, 0.5)) if before else 1.0
    accepts = sorted(firsts.values())
    recovery: dict[str, list[dict]] = {}
    for fault in faults:
        recovery.setdefault(fault.kind, []).append(
            {
                "lasted_s": round(fault.end - fault.begin, 2),
                "recovery_s": recovery_seconds(points, fault.end, normal),
                "longest_gap_s": longest_gap(accepts, fault.begin, fault.end + 1),
            }
        )
    return {
        "signups": len(enqueued),
        "delivered": len(firsts),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "dead_lettered": len(dead_lettered & set(enqueued)),
        "still_queued": len(still_queued & set(enqueued)),
        "duplicates": len(duplicates),
        "extra_copies": extra_copies,
        "duplicate_rate": round(len(duplicates) / max(1, len(enqueued)), 5),
        "duplicates_explained": reasons,
        "duplicates_unexplained": len(unexplained),
        "unexplained_ids": unexplained[:20],
        "latency": latency,
        "p99_ratio_during_vs_before": (
            round(p99_during / p99_before, 2) if p99_before and p99_during else None
        ),
        "faults": {kind: summarise(items) for kind, items in recovery.items()},
    }


def summarise(items: list[dict]) -> dict:
    """One fault kind: how many, and the worst and median recovery."""
    recoveries = [i["recovery_s"] for i in items if i["recovery_s"] is not None]
    out: dict = {"count": len(items), "never_recovered": len(items) - len(recoveries)}
    if recoveries:
        out["recovery_s_median"] = round(statistics.median(recoveries), 2)
        out["recovery_s_max"] = max(recoveries)
    out["longest_gap_s_max"] = max(i["longest_gap_s"] for i in items)
    if len(items) <= 4:
        out["each"] = items
    return out
