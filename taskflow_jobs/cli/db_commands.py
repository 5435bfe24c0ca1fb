"""Database commands: migrate, schema, enqueue, psql."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Annotated

import typer

from taskflow_jobs import db
from taskflow_jobs.cli.base import CliError, command, database_url, settings
from taskflow_jobs.db.schema_dump import dump_migrated_schema, pg_dump_binary
from taskflow_jobs.email.messages import TRANSACTIONAL_ONLY, InvalidMessage, parse_message
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE
from taskflow_jobs.sql import SCHEMA_FILE


@command()
def migrate() -> None:
    """Apply pending database migrations (safe to run concurrently and repeatedly)."""
    url = database_url()
    applied = db.migrate(url)
    names = ", ".join(m.path.name for m in applied) or "nothing to do"
    typer.echo(f"migrated {db.redact_url(url)}: {names}")


@command()
def schema(
    write: Annotated[bool, typer.Option(help="Rewrite taskflow_jobs/sql/schema.sql")] = False,
) -> None:
    """Print the schema that the migrations produce (pg_dump of a scratch database)."""

    text = dump_migrated_schema(settings())
    if write:
        SCHEMA_FILE.write_text(text)
        typer.echo(f"wrote {SCHEMA_FILE}")
    else:
        sys.stdout.write(text)


@command()
def enqueue(
    message_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. welcome_email")],
    data: Annotated[str, typer.Option("--data", "-d", help="JSON object of the message")] = "{}",
    queue_name: Annotated[
        str, typer.Option("--queue", help="The queue to put it in.")
    ] = EMAIL_QUEUE,
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key")] = None,
    delay: Annotated[float, typer.Option(help="Seconds before it may be sent")] = 0.0,
    priority: Annotated[
        str, typer.Option(help="transactional, or bulk: claimed after every transactional job")
    ] = queue.TRANSACTIONAL,
) -> None:
    """Enqueue a job by hand. An email job is checked first, like `/api/notify` does."""
    if priority not in queue.PRIORITIES:
        raise CliError(f"--priority: {priority!r} is not one of {', '.join(queue.PRIORITIES)}")
    if priority == queue.BULK and message_type in TRANSACTIONAL_ONLY:
        raise CliError(f"--priority: {message_type} is always transactional")
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise CliError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CliError("--data must be a JSON object")
    payload["type"] = message_type
    if queue_name == EMAIL_QUEUE:
        try:
            parse_message(payload)
        except InvalidMessage as exc:
            raise CliError(f"--data: {exc}; nothing was enqueued") from None
    with db.transaction(database_url()) as conn:
        message_id = queue.send(
            conn, queue_name, payload, delay=delay or None, idempotency_key=key, priority=priority
        )
    typer.echo(json.dumps({"id": message_id, "queue": queue_name, "type": message_type}))


@command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql(ctx: typer.Context) -> None:
    """psql on the app database (the embedded server's own psql); extra arguments pass on."""

    url = database_url()
    binary = pg_dump_binary().with_name("psql")
    # a child, not exec: this process must exit normally so the embedded server's
    # bookkeeping forgets it
    raise typer.Exit(subprocess.run([str(binary), url, *ctx.args], check=False).returncode)
