"""status and runs: the system at a glance, as rich tables or JSON."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from taskflow_jobs.cli.base import CliError, command, database_url


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _console() -> Console:
    """Wide enough for the tables when the output is a file or a pipe (times are UTC)."""
    return Console(width=None if sys.stdout.isatty() else 160)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for i, name in enumerate(columns):
        table.add_column(name, no_wrap=i == 0)
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    return table


@command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Queues, the latest dead letters, and each deployment's last and next run."""
    # deferred: loads Prefect (~1.5 s); only this command needs it
    from taskflow_jobs.monitoring import status as status_lib

    if as_json:
        snap = status_lib.snapshot(database_url())
        typer.echo(json.dumps(snap.to_json(), default=str, indent=2))
        return
    # the database part at once; the Prefect part after it, within a few seconds
    snap = status_lib.database_snapshot(database_url())
    console = _console()
    console.print(
        _table(
            "Queues",
            ["queue", "depth", "visible", "in flight", "delayed", "oldest", "dead letters"],
            [
                [
                    q.queue,
                    q.depth,
                    q.visible,
                    q.in_flight,
                    q.delayed,
                    _age(q.oldest_age_seconds),
                    q.dead_letters,
                ]
                for q in snap.queues
            ],
        )
    )
    if snap.pauses:
        console.print(
            _table(
                "PAUSED (taskflow-jobs queue resume, or the Prefect variable)",
                ["queue", "type", "paused since", "for", "by"],
                [
                    [
                        p.queue,
                        p.message_type,
                        _when(p.paused_at),
                        _age(p.paused_for_seconds),
                        p.source,
                    ]
                    for p in snap.pauses
                ],
            )
        )
    blocked = [r for r in snap.rate_limits if r["rate"] or r["blocked_for_seconds"]]
    if blocked:
        console.print(
            _table(
                "Provider rate limits (shared by every consumer)",
                ["provider", "per second", "backing off for"],
                [
                    [r["provider"], r["rate"] or "-", _age(r["blocked_for_seconds"] or None)]
                    for r in blocked
                ],
            )
        )
    console.print(
        _table(
            "Latest dead letters (taskflow-jobs dlq list / dlq redrive)",
            ["id", "type", "attempts", "dead-lettered", "reason"],
            [
                [d.id, d.payload.get("type"), d.attempt, _when(d.dead_lettered_at), d.reason[:100]]
                for d in snap.dead_letters
            ],
        )
    )
    if snap.skipped:
        console.print(
            _table(
                "Skipped in the last day (opted out or suppressed: taskflow-jobs suppress list)",
                ["type", "why", "count"],
                [[s["type"], s["why"], s["count"]] for s in snap.skipped],
            )
        )
    console.print(
        _table(
            "Recent failures (jobs.recent_failures)",
            ["failed at", "message", "type", "attempt", "now", "error"],
            [
                [
                    _when(f["failed_at"]),
                    f["message_id"],
                    f["message_type"],
                    f["attempt"],
                    f["outcome"],
                    (f["error"] or "")[:80],
                ]
                for f in snap.recent_failures
            ],
        )
    )
    console.file.flush()
    status_lib.add_deployments(snap)
    if snap.prefect_error:
        console.print(f"[yellow]deployments: {snap.prefect_error}[/yellow]")
        return
    console.print(
        _table(
            "Deployments",
            ["deployment", "schedule", "last run", "state", "started", "next run"],
            [
                [
                    d.flow if d.name == d.flow else f"{d.flow}/{d.name}",
                    ", ".join(d.schedules) + (" (paused)" if d.paused else "") or "-",
                    d.last_run.name if d.last_run else "-",
                    d.last_run.state if d.last_run else "-",
                    _when(d.last_run.start if d.last_run else None),
                    _when(d.next_run),
                ]
                for d in snap.deployments
            ],
        )
    )


@command()
def runs(
    flow: Annotated[str | None, typer.Option(help="Only this flow, e.g. daily-stats")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Show at most this many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Recent flow runs from Prefect (the original design's cron.job_run_details)."""
    # deferred: loads Prefect (~1.5 s); only this command needs it
    from taskflow_jobs.monitoring import (
        status as status_lib,
    )

    try:
        found = status_lib.recent_runs(flow, limit)
    except (ValueError, status_lib.PrefectUnavailable) as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in found], default=str, indent=2))
        return
    _console().print(
        _table(
            "Flow runs",
            ["run", "flow", "deployment", "state", "started", "ended", "seconds"],
            [
                [
                    r.name,
                    r.flow,
                    r.deployment or "-",
                    r.state,
                    _when(r.start),
                    _when(r.end),
                    r.duration_s if r.duration_s is not None else "-",
                ]
                for r in found
            ],
        )
    )
