"""`taskflow-jobs suppress add|remove|list`: the suppression list by hand.

Addresses on the list get no email (each message to one is finalised as skipped with the
reason); bounces, complaints and unsubscribes add to it on their own.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from taskflow_jobs import db
from taskflow_jobs.cli.base import CliError, _friendly, app, database_url
from taskflow_jobs.email import consent

SOURCE = "cli"

suppress_app = typer.Typer(
    no_args_is_help=True, help="The suppression list: addresses that get no email."
)
app.add_typer(suppress_app, name="suppress")


def suppress_command(*args: Any, **kwargs: Any) -> Any:
    def register(fn: Any) -> Any:
        return suppress_app.command(*args, **kwargs)(_friendly(fn))

    return register


def _address(value: str) -> str:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value) or len(value) > 254:
        raise CliError(f"not an email address: {value!r}")
    return value


@suppress_command("add")
def suppress_add(
    emails: Annotated[list[str], typer.Argument(help="Addresses to suppress")],
    reason: Annotated[str, typer.Option(help="Why (shown with each skipped email)")] = "manual",
) -> None:
    """Stop all email to these addresses (an address already listed keeps its reason)."""
    if not reason.strip():
        raise CliError("--reason must not be empty")
    entries = {_address(e): reason.strip() for e in emails}
    with db.transaction(database_url()) as conn:
        added = consent.suppress(conn, entries, SOURCE)
    already = sorted(set(entries) - set(added), key=str.lower)
    typer.echo(json.dumps({"added": sorted(added), "already_suppressed": already}))


@suppress_command("remove")
def suppress_remove(
    emails: Annotated[list[str], typer.Argument(help="Addresses to take off the list")],
) -> None:
    """Allow email to these addresses again; exit 1 if one was not on the list."""
    with db.transaction(database_url()) as conn:
        removed = [e for e in emails if consent.unsuppress(conn, e)]
    missing = [e for e in emails if e not in removed]
    typer.echo(json.dumps({"removed": removed, "not_found": missing}))
    if missing:
        raise typer.Exit(1)


@suppress_command("list")
def suppress_list(
    match: Annotated[str | None, typer.Option(help="Address contains this text")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON")] = False,
) -> None:
    """Suppressed addresses, newest first."""
    with db.connect(database_url()) as conn:
        rows = consent.suppressions(conn, match, limit)
    if as_json:
        typer.echo(json.dumps([{**r, "created_at": r["created_at"].isoformat()} for r in rows]))
        return
    if not rows:
        typer.echo("no suppressed addresses")
        return
    table = Table("email", "reason", "source", "since (UTC)")
    for row in rows:
        since = row["created_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(row["email"], row["reason"][:100], row["source"], since)
    Console(width=200).print(table)
