"""docs/comparison.md from the figures of a run (compare/run.py), with its two plots.

The tables are the measured figures. The prose around them says how each design behaves
by construction (what its code does) and quotes, marked as quoted and linked, what a local
run cannot measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compare import plots
from compare.text import GUIDANCE, QUOTED, RECONSTRUCTED, claims_rows, observations

ORDER = ("taskflow-jobs", "supabase-poll", "supabase-cron", "cloudflare")
SHORT = {
    "taskflow-jobs": "taskflow-jobs",
    "supabase-poll": "Supabase, polling loop",
    "supabase-cron": "Supabase, pg_cron each minute",
    "cloudflare": "Cloudflare (Miniflare)",
}
LATENCY_PNG = "comparison-latency.png"
OUTAGE_PNG = "comparison-outage.png"


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def num(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    return f"{value:,}{unit}"


def measured_rows(f: dict[str, dict[str, Any]], names: list[str]) -> list[list[str]]:
    def row(label: str, cell: Any) -> list[str]:
        return [label, *(cell(f[n]) for n in names)]

    return [
        row("delivered (of the signups)", lambda x: f"{x['delivered']:,} / {x['signups']:,}"),
        row("latency p50", lambda x: ms(x["latency_p50_ms"])),
        row("latency p99", lambda x: ms(x["latency_p99_ms"])),
        row("latency max", lambda x: ms(x["latency_max_ms"])),
        row("latency p50, first try only", lambda x: ms(x["latency_first_try_p50_ms"])),
        row("latency p50 / p99 before the outage", lambda x: _steady(x)),
        row("throughput ceiling", lambda x: _ceiling(x)),
        row("lost", lambda x: num(x["lost"])),
        row("still queued at the end", lambda x: num(x["still_queued"])),
        row("duplicated (emails sent twice or more)", lambda x: num(x["duplicated"])),
        row("dead-lettered", lambda x: num(x["dead_lettered"])),
        row("… of them with a reason", lambda x: num(x["dead_lettered_with_reason"])),
        row("… of them delivered all the same", _delivered_dead),
        row("the unknown-type job", lambda x: x["unknown_type"]),
        row("drain after the outage", lambda x: num(x["drain_after_outage_s"], " s")),
        row("provider requests", lambda x: num(x["provider_requests"])),
        row("machine load average (1/5/15 min) at the end", _load),
    ]


def _load(x: dict[str, Any]) -> str:
    load = x.get("load_average")
    return " / ".join(f"{v:.1f}" for v in load) if load else "–"


def _delivered_dead(x: dict[str, Any]) -> str:
    return num(x.get("dead_lettered_yet_delivered"))


def _baseline(results: dict[str, Any]) -> str:
    base = results.get("baseline")
    if not base:
        return ""
    return (
        f"Same-run baseline for the ceilings: the provider stand-in alone took "
        f"{base['emails_per_s']:,.0f} emails/s ({base['what']}). Everything shares the "
        "machine's 2 cores: the driver, the provider, the design's processes and database."
    )


def _steady(x: dict[str, Any]) -> str:
    if x.get("steady_p50_ms") is None:
        return "–"
    return f"{ms(x['steady_p50_ms'])} / {ms(x['steady_p99_ms'])}"


def _ceiling(x: dict[str, Any]) -> str:
    if x["ceiling_per_s"] is None:
        return "–"
    how = "2,000 at once" if x["ceiling_how"] == "burst" else x["ceiling_how"]
    return f"{x['ceiling_per_s']:,.1f} emails/s ({how})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines)


def write(results: dict[str, Any], docs: Path) -> None:
    figures = results["figures"]
    names = [n for n in ORDER if n in figures]
    plots.latency_cdf(results, docs / LATENCY_PNG)
    plots.delivered_over_time(results, docs / OUTAGE_PNG)
    w = results["workload"]
    header = ["", *(SHORT[n] for n in names)]
    parts = [
        "# taskflow-jobs, Supabase and Cloudflare, measured side by side",
        "",
        "The case study this project comes from compares two designs for the same background",
        "jobs (welcome emails from signups, task-assignment emails, daily stats, a weekly",
        "cleanup): **Supabase** (pgmq filled by triggers, an Edge Function consumer, pg_cron)",
        "and **Cloudflare** (a Hono producer Worker, Queues, a consumer Worker, Cron Triggers).",
        "It states claims. This page measures both, and taskflow-jobs, on one workload with",
        "the same faults, on one 2-core machine. Regenerate it with one command:",
        "",
        "```sh",
        "make compare   # about 25 minutes; installs Debian PostgreSQL 15 + pg_cron, npm packages",
        "```",
        "",
        f"Measured {results['measured_at']} on this project's 2-core machine; every figure",
        "below comes from what the provider stand-in received and what each design kept.",
        "",
        "## The workload and the faults",
        "",
        f"- **{w['signups']:,} signups at {w['rate']:.0f}/s**, each one committed INSERT into",
        "  `auth.users` (taskflow-jobs, Supabase: a trigger queues the email in the same",
        "  transaction) or one `POST /api/signup` to the producer Worker (Cloudflare).",
        f"- **The provider fails {w['fail_rate']:.0%} of attempts with 500**: attempt *n* to an",
        "  address fails when a hash of (address, n) says so, so every design meets the same",
        "  failures at the same attempts.",
        f"- **A {w['outage'][1] - w['outage'][0]:.0f} s provider outage** (every request 503) from",
        f"  t = {w['outage'][0]:.0f} s to {w['outage'][1]:.0f} s.",
        f"- **One job of an unknown type** (`mystery_email`) at t = {w['unknown_at']:.0f} s.",
        f"- **A consumer crash mid-batch** at t = {w['crash_at']:.0f} s: right after the",
        f"  provider accepted the {w['crash_after']}rd email of the batch in hand, the",
        "  consumer dies (SIGKILL of the `consume` process or of the Edge Function's",
        "  process; a crashed invocation for the Worker). It is back at once (a supervisor,",
        "  the next invocation).",
        "- Then each design drains; a healthy burst of 2,000 signups at once measures the",
        "  throughput ceiling. Latency is from just before the signup's INSERT (or request) to",
        "  the provider's first 2xx for that address. Before the workload, one warm-up email",
        "  goes through each design (not counted).",
        "",
        "## Measured",
        "",
        table(header, measured_rows(figures, names)),
        "",
        _baseline(results),
        "",
        f"![Latency CDF per design]({LATENCY_PNG})",
        "",
        f"![Delivered over time across the outage]({OUTAGE_PNG})",
        "",
        *observations(results),
        "",
        "## The case study's claims next to the measurements",
        "",
        table(["claim (case study)", "measured here"], claims_rows(figures)),
        "",
        "## What an operator can see afterwards",
        "",
        table(["", "what is there after this run"], _operator_rows(figures, names)),
        "",
        "## Not measurable here: quoted",
        "",
        "The run is local, so edge latency, cost and hosted limits are not measured. These",
        "are **quoted** from public pages (retrieved for this page; check them for changes):",
        "",
        *QUOTED,
        "",
        "## Decision guidance, revisited",
        "",
        *GUIDANCE(figures),
        "",
        "## What was reconstructed, and how faithfully",
        "",
        *RECONSTRUCTED,
        "",
    ]
    notes = [f"- {SHORT[n]}: {note}" for n in names for note in figures[n].get("notes", [])]
    notes += [
        f"- {SHORT[n]}: signups reached only {figures[n]['signup_rate']:.1f}/s of the "
        f"{w['rate']:.0f}/s asked for (each one is an API call into the same runtime)"
        for n in names
        if figures[n].get("signup_rate") and figures[n]["signup_rate"] < 0.95 * w["rate"]
    ]
    if notes:
        parts += ["Notes from this run:", "", *notes, ""]
    (docs / "comparison.md").write_text("\n".join(parts))


def _operator_rows(f: dict[str, dict[str, Any]], names: list[str]) -> list[list[str]]:
    rows = []
    for n in names:
        op = f[n]["operator"]
        if n == "taskflow-jobs":
            reasons = "; ".join(f"{k} ({v})" for k, v in op.get("dead_letter_reasons", {}).items())
            text = (
                f"`jobs.dead_letters`: {op['dead_letters']} rows, each with its reason and every "
                f"attempt's error ({reasons or 'none'}); `jobs.recent_failures`: "
                f"{op['recorded_failures']} failed attempts with time and error; "
                f"{op['archived']:,} delivered messages in `jobs.archive`; `taskflow-jobs status`"
                ", `dlq list` / `dlq redrive`; Prefect runs with an artifact per run"
            )
        elif n.startswith("supabase"):
            logs = op.get("function_log_lines", {})
            text = (
                f"`pgmq.metrics`: queue length {op['queue_length']:,}, {op['total_messages']:,} "
                f"messages ever; `job_failures`: {op['job_failures']} rows (error text, "
                f"read_ct) and the same messages in `pgmq.a_email_notifications` "
                f"({op['archived']}); `cron.job_run_details`: {op['cron_runs']} runs; "
                f"delivered messages are deleted (no record); the unknown type and each "
                f"failed attempt exist only as function log lines "
                f"({', '.join(f'{v:,} {k}' for k, v in logs.items()) or 'none'})"
            )
        else:
            logs = op.get("log_lines", {})
            text = (
                f"the dead letter queue: {op['dlq_messages']} message bodies with an attempt "
                "count and no error (and only when a consumer reads it; Miniflare drops "
                "messages sent to a queue without one); worker logs "
                f"({', '.join(f'{v:,} {k}' for k, v in logs.items()) or 'none'}); "
                "delivered messages leave no record"
            )
        rows.append([SHORT[n], text])
    return rows
