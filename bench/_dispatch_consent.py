"""Part 4 of bench/dispatch.py: the consent step's cost (see its docstring).

The dispatcher's own loop (no Prefect) with and without the consent step, same messages,
same stub, alternating rounds (ABBA)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import psycopg

from bench._stub import clear

CONSENT_EMAILS = int(os.environ.get("BENCH_CONSENT_EMAILS", "2000"))
CONSENT_ROUNDS = int(os.environ.get("BENCH_CONSENT_ROUNDS", "7"))
SUPPRESSED = 10_000


class NoConsent:
    """The dispatcher's consent step minus the consent: profiles only, nothing skipped."""

    def look_up(self, conn: Any, parsed: Any) -> Any:
        from taskflow_jobs.email.compose import load_profiles, profile_ids
        from taskflow_jobs.email.consent import Screening

        ids = profile_ids(p for _, p in parsed)
        return (load_profiles(conn, ids) if ids else {}), Screening(kept=list(parsed))


def seed_consent(db_url: str) -> list[tuple[str, str]]:
    """Users with preference rows (all enabled) and a suppression list of other addresses."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        users = conn.execute(
            "INSERT INTO auth.users (id, email, raw_user_meta_data)"
            " SELECT gen_random_uuid(), 'pref' || g || '@example.com',"
            "        jsonb_build_object('full_name', 'Pref ' || g)"
            " FROM generate_series(1, %s) AS g RETURNING id::text, email",
            (CONSENT_EMAILS,),
        ).fetchall()
        conn.execute("DELETE FROM jobs.messages")  # their welcome emails are not measured
        conn.execute(
            "INSERT INTO public.notification_preferences (user_id, type, enabled)"
            " SELECT u.id, t, true FROM auth.users u, unnest(ARRAY['task_assigned',"
            " 'notification']) AS t WHERE u.email LIKE 'pref%%'"
        )
        conn.execute(
            "INSERT INTO jobs.suppressions (email, reason, source)"
            " SELECT 'gone' || g || '@example.com', 'bounce', 'bench'"
            " FROM generate_series(1, %s) AS g",
            (SUPPRESSED,),
        )
    return users


def enqueue_consent_round(db_url: str, users: list[tuple[str, str]]) -> None:
    payloads = [
        {"type": "task_assigned", "task_id": i, "task_title": f"Task {i}", "assignee_id": uid}
        if i % 2
        else {"type": "notification", "to": address, "subject": "Build", "body": "All green."}
        for i, (uid, address) in enumerate(users)
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT jobs.send_batch('email_notifications', %s::jsonb[])",
            ([json.dumps(p) for p in payloads],),
        )


def drain_library(db_url: str, with_consent: bool) -> tuple[float, float]:
    """Emails/s of one drain by the dispatcher's own loop, and its CPU ms per email."""
    from taskflow_jobs.email.outcomes import DispatchStats
    from taskflow_jobs.email.worker.batch import Dispatcher
    from taskflow_jobs.email.worker.run import RunPlan, run_dispatch
    from taskflow_jobs.settings import get_settings

    async def run() -> tuple[DispatchStats, float, float]:
        settings = get_settings()
        dispatcher = await Dispatcher(settings, db_url).open()
        if not with_consent:
            dispatcher.consent = NoConsent()  # type: ignore[assignment]
        stats = DispatchStats()
        plan = RunPlan(budget=600, concurrency=settings.email_concurrency)

        async def run_batch(window: float, number: int, ticket: Any) -> Any:
            return await dispatcher.run_batch(window, stats, ticket)

        started, cpu = time.perf_counter(), time.process_time()
        try:
            await run_dispatch(dispatcher, run_batch, plan, stats)
        finally:
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            await dispatcher.close()
        return stats, elapsed, cpu

    stats, elapsed, cpu = asyncio.run(run())
    assert stats.sent == CONSENT_EMAILS, stats.summary()
    return CONSENT_EMAILS / elapsed, cpu * 1000 / CONSENT_EMAILS


def consent(db_url: str, stub_url: str) -> dict[str, Any]:
    users = seed_consent(db_url)
    rounds: list[dict[str, float]] = []
    for number in range(CONSENT_ROUNDS):
        figures: dict[str, float] = {}
        # ABBA: which variant goes first alternates, so drift favours neither
        for with_consent in (True, False) if number % 2 == 0 else (False, True):
            enqueue_consent_round(db_url, users)
            name = "with" if with_consent else "without"
            figures[name], figures[f"{name}_cpu_ms"] = drain_library(db_url, with_consent)
            clear(stub_url)
        figures["ratio"] = figures["with"] / figures["without"]
        # cost per email without over with: >= 0.95 means at most ~5% more CPU
        figures["cpu_ratio"] = figures["without_cpu_ms"] / figures["with_cpu_ms"]
        rounds.append(figures)
        print(f"consent round {number + 1}: {figures}", file=sys.stderr, flush=True)
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    cpu = sorted(rounds, key=lambda r: r["cpu_ratio"])[len(rounds) // 2]
    return {
        "consent_emails": CONSENT_EMAILS,
        "consent_rounds": CONSENT_ROUNDS,
        "consent_suppressed_addresses": SUPPRESSED,
        "consent_eps": round(median["with"], 1),
        "consent_baseline_eps": round(median["without"], 1),
        "consent_ratio": round(median["ratio"], 3),
        "consent_round_ratios": [round(r["ratio"], 3) for r in rounds],
        "consent_cpu_ms_per_email": round(cpu["with_cpu_ms"], 3),
        "consent_baseline_cpu_ms_per_email": round(cpu["without_cpu_ms"], 3),
        "consent_cpu_ratio": round(cpu["cpu_ratio"], 3),
        "consent_round_cpu_ratios": [round(r["cpu_ratio"], 3) for r in rounds],
    }
