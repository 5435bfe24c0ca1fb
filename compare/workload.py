"""One workload, the same faults, for every design: the timeline and the loop that plays it.

Timeline (seconds from the first signup), the same for all designs:

    0 .. 100   10,000 signups at 100/s (one committed INSERT, or one API call, each)
    always     the provider fails 10 % of attempts with 500 (the same attempts everywhere)
    20         one job of a type no consumer knows (`mystery_email`)
    40 .. 70   provider outage: every request gets 503
    85         consumer crash: the consumer dies right after the provider accepted an email
               of the batch in hand (SIGKILL of the process, or a crashed Workers invocation)
    then       wait until every signup is delivered or dead-lettered and the queue is empty
               (or the design's time box runs out), then a healthy burst for the ceiling

A design is an object with the methods of `Design`; `play` drives it and returns a `Run`
with the raw observations. Figures are computed from it in compare/figures.py.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

API_KEY = "SG.compare-key"
UNKNOWN_TYPE = "mystery_email"
TIME_BOX = 180.0  # seconds a design that cannot drain is watched after the last signup


@dataclass(frozen=True)
class Workload:
    signups: int = 10_000
    rate: float = 100.0
    fail_rate: float = 0.10
    unknown_at: float = 20.0
    outage: tuple[float, float] = (40.0, 70.0)
    crash_at: float | None = 85.0
    crash_after: int = 3  # accepted requests after arming: mid-batch (batches are >= 10)
    drain_timeout: float = 420.0  # after the last signup
    burst: int = 2_000

    @property
    def duration(self) -> float:
        return self.signups / self.rate


SMOKE = Workload(
    signups=10,
    rate=20.0,
    fail_rate=0.0,
    unknown_at=0.0,
    outage=(0.0, 0.0),
    crash_at=None,
    drain_timeout=120.0,
    burst=0,
)


def address(i: int, prefix: str = "signup") -> str:
    return f"{prefix}{i:05d}@example.com"


class Provider:
    """Client of the provider stand-in's control routes (compare/provider.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=60)

    def control(self, **change: Any) -> dict[str, Any]:
        return self.http.post(f"{self.url}/_compare/state", json=change).json()

    def requests(self) -> list[tuple[float, str, int]]:
        return [tuple(r) for r in self.http.post(f"{self.url}/_compare/requests").json()]

    def accepted(self, prefix: str = "signup") -> set[str]:
        return {to for _, to, status in self.requests() if status < 300 and to.startswith(prefix)}

    def accepted_count(self, prefix: str = "signup") -> int:
        return self.http.post(f"{self.url}/_compare/accepted", json={"prefix": prefix}).json()


class Design:
    """What the driver needs from a design. Subclasses start real processes."""

    name = "design"
    label = "design"
    time_boxed = False  # True: the design cannot drain this workload; watch for drain_timeout
    signup_callers = 1  # threads making signups (one committed INSERT is fast enough alone)

    def start(self, provider_url: str) -> None:
        raise NotImplementedError

    def signup(self, email: str, name: str) -> None:
        raise NotImplementedError

    def enqueue_unknown(self) -> None:
        raise NotImplementedError

    def burst(self, emails: list[str]) -> None:
        for email in emails:
            self.signup(email, "Burst")

    def crash_target(self) -> int | None:
        """Process group to SIGKILL at the crash, or None for a crashed Workers invocation."""
        raise NotImplementedError

    def after_crash(self) -> None:
        """Bring the consumer back the way its platform does (restart, next invocation)."""

    def backlog(self) -> int | None:
        """Messages still in the queue (None when the design cannot tell)."""
        return None

    def dead_letters(self) -> list[dict[str, Any]]:
        """[{"email": str | None, "reason": str | None, "attempts": int | None}, ...]"""
        raise NotImplementedError

    def operator_view(self) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


@dataclass
class Run:
    design: str
    label: str
    workload: Workload
    started: float = 0.0  # time.time() of the first signup
    signup_rate: float = 0.0  # signups per second achieved
    issued: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[float, str, int]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    crashed_at: float | None = None
    drained_at: float | None = None
    watch_ended: float | None = None
    backlog_left: int | None = None
    burst_started: float | None = None
    burst_finished: float | None = None
    operator: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


LOGS = Path("/tmp/compare-logs")


def keep_logs(log_dir: Path, name: str) -> None:
    """Copy a design's process logs to /tmp/compare-logs/<name> before its work dir goes."""
    if log_dir.exists():
        shutil.copytree(log_dir, LOGS / name, dirs_exist_ok=True)


def say(text: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _crash(design: Design, provider: Provider, workload: Workload, run: Run) -> None:
    target = design.crash_target()
    provider.control(crash_after=workload.crash_after, crash_pid=target)
    deadline = time.monotonic() + workload.drain_timeout + workload.duration
    while time.monotonic() < deadline:
        crashed = provider.control().get("crashed_at")
        if crashed:
            run.crashed_at = crashed
            say(f"{design.name}: consumer crashed mid-batch")
            design.after_crash()
            return
        time.sleep(0.02)


def _events(design: Design, provider: Provider, workload: Workload, run: Run, t0: float) -> None:
    """The faults, at their times (a thread beside the signup loop)."""
    plan: list[tuple[float, str]] = [(workload.unknown_at, "unknown")]
    if workload.outage[1] > workload.outage[0]:
        plan += [(workload.outage[0], "outage on"), (workload.outage[1], "outage off")]
    if workload.crash_at is not None:
        plan.append((workload.crash_at, "crash"))
    for at, what in sorted(plan):
        pause = t0 + at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        say(f"{design.name}: t={at:.0f}s {what}")
        if what == "unknown":
            design.enqueue_unknown()
        elif what == "outage on":
            provider.control(outage=True)
        elif what == "outage off":
            provider.control(outage=False)
        else:
            threading.Thread(
                target=_crash, args=(design, provider, workload, run), daemon=True
            ).start()


def _drained(design: Design, provider: Provider, run: Run) -> bool:
    dead = design.dead_letters()
    if provider.accepted_count() + len(dead) < len(run.issued):
        return False  # the cheap check first: the full one reads every request
    settled = set(provider.accepted()) | {d["email"] for d in dead if d["email"]}
    if not set(run.issued) <= settled:
        return False
    backlog = design.backlog()
    return backlog is None or backlog == 0


def warm_up(design: Design, provider: Provider, timeout: float = 150) -> None:
    """One email through the design before the clock starts (imports, first connections,
    the first pg_cron minute), so no design pays its start-up inside the figures."""
    design.signup("warmup@example.com", "Warm Up")
    deadline = time.monotonic() + timeout
    while not provider.accepted_count("warmup"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{design.name}: the warm-up email was not delivered")
        time.sleep(0.1)


def _signups(design: Design, workload: Workload, run: Run, t0: float) -> None:
    """Each signup at its slot; a design whose signup is a slow call gets a few callers, so
    the rate holds (latency counts from just before each call)."""

    def one(i: int) -> None:
        email = address(i)
        run.issued[email] = time.time()
        design.signup(email, f"User {i}")

    with ThreadPoolExecutor(design.signup_callers) as pool:
        pending = []
        for i in range(workload.signups):
            pause = t0 + i / workload.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if design.signup_callers == 1:
                one(i)
            else:
                pending.append(pool.submit(one, i))
        for future in pending:
            future.result()


def play(design: Design, provider: Provider, workload: Workload) -> Run:
    run = Run(design.name, design.label, workload)
    warm_up(design, provider)
    provider.control(reset=True, fail_rate=workload.fail_rate, outage=False)
    t0 = time.monotonic()
    run.started = time.time()
    events = threading.Thread(target=_events, args=(design, provider, workload, run, t0))
    events.start()
    _signups(design, workload, run, t0)
    run.signup_rate = workload.signups / (time.monotonic() - t0)
    say(f"{design.name}: {workload.signups} signups issued at {run.signup_rate:.1f}/s")
    events.join()
    wait = min(workload.drain_timeout, TIME_BOX) if design.time_boxed else workload.drain_timeout
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _drained(design, provider, run):
            run.drained_at = time.time()
            break
        time.sleep(1.0)
    run.watch_ended = time.time()
    if run.drained_at is None:
        run.notes.append(f"not drained {wait:.0f} s after the last signup")
    if workload.crash_at is not None and run.crashed_at is None:
        run.notes.append("the crash did not happen (no batch in flight after arming)")
    time.sleep(5)  # a late duplicate (a lease expiring) lands before the count
    run.backlog_left = design.backlog()
    run.dead = design.dead_letters()
    run.operator = design.operator_view()
    if workload.burst and not design.time_boxed:
        _burst(design, provider, workload, run)
    run.requests = provider.requests()
    return run


def _burst(design: Design, provider: Provider, workload: Workload, run: Run) -> None:
    """Throughput ceiling: a healthy provider, `burst` signups at once, time to deliver all."""
    provider.control(fail_rate=0.0, outage=False)
    emails = [address(i, "burst") for i in range(workload.burst)]
    run.burst_started = time.time()
    design.burst(emails)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if provider.accepted_count("burst") >= len(emails):
            break
        time.sleep(0.2)
    times = [at for at, to, status in provider.requests() if status < 300 and to[:5] == "burst"]
    run.burst_finished = max(times) if times else None
