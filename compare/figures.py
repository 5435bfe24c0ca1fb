"""The figures of one run, computed from what the provider received and what the design
kept: nothing here is reported by the designs themselves."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict
from typing import Any

from compare.workload import UNKNOWN_TYPE, Run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def first_deliveries(run: Run) -> dict[str, float]:
    first: dict[str, float] = {}
    for at, to, status in sorted(run.requests):
        if status < 300 and to in run.issued:
            first.setdefault(to, at)
    return first


def latencies(run: Run) -> list[float]:
    """Seconds from each signup to the provider's first acceptance of its email."""
    first = first_deliveries(run)
    return [first[email] - issued for email, issued in run.issued.items() if email in first]


def steady_latencies(run: Run) -> list[float]:
    """Latencies of the signups made before the outage began: the design's steady state
    (with the 10 % errors and their retries, without the outage's backlog)."""
    first = first_deliveries(run)
    start = run.started + run.workload.outage[0]
    return [first[e] - t for e, t in run.issued.items() if e in first and t < start]


def ceiling_per_s(run: Run) -> tuple[float | None, str]:
    if run.burst_started and run.burst_finished:
        return run.workload.burst / (run.burst_finished - run.burst_started), "burst"
    # time-boxed designs: the most emails accepted in any 60 s of the run
    times = sorted(first_deliveries(run).values())
    best, j = 0, 0
    for i, at in enumerate(times):
        while times[j] < at - 60:
            j += 1
        best = max(best, i - j + 1)
    return (best / 60 if times else None), "busiest 60 s"


def compute(run: Run) -> dict[str, Any]:
    w = run.workload
    first = first_deliveries(run)
    lat = latencies(run)
    steady = steady_latencies(run)
    accepted = Counter(to for _, to, status in run.requests if status < 300 and to in run.issued)
    dead_signups = {d["email"] for d in run.dead if d.get("email") in run.issued}
    dead_unknown = [d for d in run.dead if d.get("type") == UNKNOWN_TYPE or not d.get("email")]
    undelivered = set(run.issued) - set(first)
    still_queued = run.backlog_left or 0
    lost = len(undelivered - dead_signups)
    if run.design == "supabase-cron":
        lost = max(0, lost - still_queued)  # what is still queued is late, not lost
    outage_end = run.started + w.outage[1]
    before_end = [first[e] for e, t in run.issued.items() if t < outage_end and e in first]
    drain = (
        max(before_end) - outage_end
        if before_end and w.outage[1] > w.outage[0] and run.drained_at is not None
        else None
    )
    ceiling, how = ceiling_per_s(run)
    attempts = Counter(to for _, to, _status in run.requests if to in run.issued)
    return {
        "design": run.design,
        "label": run.label,
        "signups": len(run.issued),
        "signup_rate": round(run.signup_rate, 1),
        "delivered": len(first),
        "latency_p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "latency_p99_ms": round(percentile(lat, 0.99) * 1000, 1) if lat else None,
        "latency_max_ms": round(max(lat) * 1000, 1) if lat else None,
        "latency_first_try_p50_ms": _first_try_p50(run, first, attempts),
        "steady_p50_ms": _ms(statistics.median(steady)) if steady else None,
        "steady_p99_ms": _ms(percentile(steady, 0.99)) if steady else None,
        "ceiling_per_s": round(ceiling, 1) if ceiling else None,
        "ceiling_how": how,
        "lost": lost,
        "still_queued": still_queued,
        "duplicated": sum(1 for n in accepted.values() if n > 1),
        "extra_sends": sum(n - 1 for n in accepted.values() if n > 1),
        "dead_lettered": len(dead_signups),
        "dead_lettered_yet_delivered": len(dead_signups & set(first)),
        "dead_lettered_with_reason": sum(
            1 for d in run.dead if d.get("email") in run.issued and d.get("reason")
        ),
        "unknown_type": "dead letter with reason" if dead_unknown else "logged, then deleted",
        "drain_after_outage_s": round(drain, 1) if drain is not None else None,
        "outage_s": w.outage[1] - w.outage[0],
        "watched_s": round((run.watch_ended or run.started) - run.started),
        "provider_requests": len(run.requests),
        "crashed": run.crashed_at is not None,
        "drained": run.drained_at is not None,
        "notes": run.notes,
        "operator": run.operator,
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _first_try_p50(run: Run, first: dict[str, float], attempts: Counter[str]) -> float | None:
    """Median latency of emails accepted at their first request (no retry involved)."""
    ones = [first[e] - run.issued[e] for e in first if attempts[e] == 1]
    return round(statistics.median(ones) * 1000, 1) if ones else None


def series(run: Run) -> dict[str, Any]:
    """What the plots need: the latency CDF (as 401 quantiles, seconds) and deliveries per
    second since the start."""
    first = first_deliveries(run)
    lat = sorted(latencies(run))
    per_second = Counter(int(at - run.started) for at in first.values())
    horizon = max(per_second) + 1 if per_second else 0
    return {
        "latency_quantiles_s": [round(percentile(lat, q / 400), 4) for q in range(401)]
        if lat
        else [],
        "delivered_per_s": [per_second.get(s, 0) for s in range(horizon)],
        "workload": asdict(run.workload),
    }
