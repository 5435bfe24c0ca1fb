"""Email commands: consume, dispatch, dlq list / show / redrive."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from taskflow_jobs import db
from taskflow_jobs.cli.base import CliError, _friendly, app, command, database_url
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from taskflow_jobs.sql import query

dlq = typer.Typer(
    no_args_is_help=True,
    help="Dead letters of the email queue: list, show, redrive.",
)
app.add_typer(dlq, name="dlq")


def dlq_command(*args: Any, **kwargs: Any) -> Any:
    def register(fn: Any) -> Any:
        return dlq.command(*args, **kwargs)(_friendly(fn))

    return register


@command()
def consume() -> None:
    """Send emails as they are enqueued (LISTEN/NOTIFY), until SIGTERM or Ctrl-C.

    Delivery never waits for Prefect: each burst of work is reported as an
    `email-dispatch` flow run from the side, and while Prefect is unreachable the emails
    keep leaving (the outage is reported when it is back). On SIGTERM it stops claiming,
    finishes or releases what it holds, exits 0.
    """
    # deferred: loads Prefect (~1.5 s); only this command needs it
    from blocks.keeper import SettingsKeeper
    from blocks.registry import settings_from_blocks
    from flows.common import require_database
    from taskflow_jobs.email.worker.consumer import Consumer, consumer_label, run_until_signalled
    from taskflow_jobs.email.worker.observer import Observer, ObserverTiming
    from taskflow_jobs.jobs.metrics import serve_consume_metrics
    from taskflow_jobs.monitoring.pause_switch import SwitchMirror, variable_name
    from taskflow_jobs.settings import load_settings

    def read(wait: float | None = None) -> Any:
        # the environment, with the blocks for what it leaves unset (failing closed)
        needs = ("email", "database")
        return require_database(settings_from_blocks(load_settings(), needs, wait=wait))

    current = read()
    url = db.database_url(current)
    keeper = SettingsKeeper(lambda: read(wait=0), current).start()
    # the pause switch of the Prefect UI, mirrored into jobs.pauses (which the claim reads)
    mirror = SwitchMirror(url, variable_name(current), current.pause_poll_interval).start()
    timing = ObserverTiming(call_timeout=current.prefect_call_timeout)
    observer = Observer(prefect_api_url(current), consumer_label(), url, timing)
    try:
        with serve_consume_metrics(current, url):
            run_until_signalled(
                Consumer(current, url, observer, latest_settings=lambda: keeper.current)
            )
    finally:
        mirror.stop()
        keeper.stop()


def prefect_api_url(settings: Any) -> str:
    """PREFECT_API_URL, else where `taskflow-jobs up` runs the server; never an ephemeral
    server (Prefect starts one in-process when no API URL is set)."""
    # deferred: loads Prefect (~1.5 s); only `consume` needs it
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or f"http://127.0.0.1:{settings.prefect_port}/api"


@command()
def dispatch(
    budget: Annotated[float | None, typer.Option(help="Seconds to run at most")] = None,
) -> None:
    """Send what is queued now (one `email-dispatch` flow run in drain mode), then exit."""
    # deferred: loads Prefect (~1.5 s); only this command needs it
    from flows.email_dispatch import dispatch_summary, email_dispatch

    database_url()  # fail early, naming the setting, if the database is unreachable

    async def run() -> dict[str, Any]:
        state = await email_dispatch(mode="drain", time_budget=budget, return_state=True)
        return await dispatch_summary(state)

    summary = asyncio.run(run())
    typer.echo(json.dumps(summary))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(value: str | None) -> datetime | None:
    """`30m`, `2h`, `7d` (ago) or an ISO date/time."""
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"--since: expected 30m, 2h, 7d or an ISO date, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


@dlq_command("list")
def dlq_list(
    message_type: Annotated[str | None, typer.Option("--type", help="Only this type")] = None,
    reason: Annotated[str | None, typer.Option(help="Reason contains this text")] = None,
    since: Annotated[str | None, typer.Option(help="Newer than: 30m, 2h, 7d or ISO")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Show at most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Full rows as JSON")] = False,
) -> None:
    """Dead letters, newest first."""
    params = {
        "queue": EMAIL_QUEUE,
        "type": message_type,
        "reason": reason,
        "since": parse_since(since),
        "limit": limit,
    }
    with db.connect(database_url()) as conn:
        rows = conn.execute(query("email_dead_letters"), params).fetchall()
    if as_json:
        typer.echo(json.dumps([_jsonable(r) for r in rows], indent=2, default=str))
        return
    if not rows:
        typer.echo("no dead letters")
        return
    table = Table("id", "type", "attempts", "dead-lettered (UTC)", "redrives", "reason")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["type"] or "?",
            f"{row['attempt']}/{row['max_attempts']}",
            row["dead_lettered_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(row["redrive_count"]),
            row["reason"][:120],
        )
    Console(width=200).print(table)


@dlq_command("show")
def dlq_show(message_id: Annotated[int, typer.Argument(help="Dead letter id")]) -> None:
    """One dead letter with its payload and whole error history (JSON)."""
    with db.connect(database_url()) as conn:
        row = conn.execute(query("email_dead_letter"), {"id": message_id}).fetchone()
    if row is None:
        raise CliError(f"no dead letter with id {message_id}")
    typer.echo(json.dumps(_jsonable(row), indent=2, default=str))


@dlq_command("redrive")
def dlq_redrive(
    ids: Annotated[list[int] | None, typer.Argument(help="Dead letter ids")] = None,
    message_type: Annotated[str | None, typer.Option("--type", help="Every one of a type")] = None,
    redrive_all: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
) -> None:
    """Put dead letters back in the queue with fresh attempts (their history is kept)."""
    chosen = sum([bool(ids), message_type is not None, redrive_all])
    if chosen != 1:
        raise CliError("redrive needs exactly one of: message ids, --type TYPE, --all")
    with db.transaction(database_url()) as conn:
        revived = queue.redrive(
            conn,
            ids=ids or None,
            message_type=message_type,
            queue=EMAIL_QUEUE,
            all=redrive_all,
        )
    missing = sorted(set(ids or []) - set(revived))
    typer.echo(json.dumps({"redriven": len(revived), "ids": sorted(revived), "not_found": missing}))
    if missing:
        raise typer.Exit(1)
