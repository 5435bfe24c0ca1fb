"""The `taskflow-jobs` command. Each command is a thin shell over a library module."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any

import psycopg
import typer

from taskflow_jobs import db, queue
from taskflow_jobs.settings import EMAIL_QUEUE, Settings, SettingsError, get_settings

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="taskflow-jobs: TaskFlow's background jobs (email queue, cron reports, webhooks).",
)


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit code 1."""


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one clear line on stderr instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (CliError, SettingsError, db.DatabaseUnavailable, db.MigrationChanged) as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None
        except psycopg.Error as exc:
            reason = exc.diag.message_primary or str(exc).splitlines()[0]
            typer.secho(f"error: database refused: {reason}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None

    return wrapper


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`app.command` whose errors are reported as one line."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(*args, **kwargs)(_friendly(fn))

    return register


def settings() -> Settings:
    return get_settings()


def database_url() -> str:
    return db.database_url(settings())


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    from taskflow_jobs.logs import configure_logging

    try:
        configure_logging(settings(), verbose=verbose)
    except SettingsError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None


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
    from taskflow_jobs.schema_dump import dump_migrated_schema

    text = dump_migrated_schema(settings())
    if write:
        from taskflow_jobs.sql import SCHEMA_FILE

        SCHEMA_FILE.write_text(text)
        typer.echo(f"wrote {SCHEMA_FILE}")
    else:
        sys.stdout.write(text)


@command()
def enqueue(
    message_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. welcome_email")],
    data: Annotated[str, typer.Option("--data", "-d", help="JSON object of the message")] = "{}",
    queue_name: Annotated[str, typer.Option("--queue")] = EMAIL_QUEUE,
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key")] = None,
    delay: Annotated[float, typer.Option(help="Seconds before it may be sent")] = 0.0,
) -> None:
    """Enqueue a job by hand. The dispatcher validates it; a bad one is dead-lettered."""
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise CliError(f"--data is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise CliError("--data must be a JSON object")
    payload["type"] = message_type
    with db.transaction(database_url()) as conn:
        message_id = queue.send(conn, queue_name, payload, delay=delay or None, idempotency_key=key)
    typer.echo(json.dumps({"id": message_id, "queue": queue_name, "type": message_type}))


@command()
def up(
    prefect_port: Annotated[int | None, typer.Option(help="Port of the Prefect server")] = None,
) -> None:
    """Start the whole system on embedded defaults until Ctrl-C (what `make run` runs)."""
    from taskflow_jobs.local import run_up

    run_up(settings(), prefect_port=prefect_port)


def main() -> None:
    logging.captureWarnings(True)
    app()


if __name__ == "__main__":
    main()
