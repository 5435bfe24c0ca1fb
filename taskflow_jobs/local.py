"""`taskflow-jobs up`: the whole system on embedded defaults, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import typer

from taskflow_jobs import db, system
from taskflow_jobs.settings import Settings


@dataclass
class Stack:
    """What is running and where: printed for the user, passed to children as environment."""

    database_url: str
    prefect_api_url: str
    prefect_env: dict[str, str]
    embedded: db.EmbeddedPostgres | None


def prefect_database_url(settings: Settings, embedded: db.EmbeddedPostgres | None) -> str:
    """asyncpg URL of the `prefect` database next to the app database."""
    if embedded is not None:
        return embedded.asyncpg_url(db.PREFECT_DATABASE)
    parts = urlsplit(settings.database_url or "")
    db.ensure_database(parts._replace(path="/postgres").geturl(), db.PREFECT_DATABASE)
    return parts._replace(scheme="postgresql+asyncpg", path=f"/{db.PREFECT_DATABASE}").geturl()


def start_stack(
    settings: Settings, supervisor: system.Supervisor, *, prefect_port: int | None = None
) -> Stack:
    """Embedded Postgres (unless DATABASE_URL), migrations, and a Prefect server on Postgres."""
    embedded = None if settings.database_url else db.start_embedded(settings)
    url = embedded.url() if embedded else db.database_url(settings)
    db.migrate(url)

    port = prefect_port or settings.prefect_port
    prefect_env = system.prefect_server_env(
        settings.data_dir.resolve() / "prefect", prefect_database_url(settings, embedded), port
    )
    system.start_prefect_server(supervisor, prefect_env)
    return Stack(url, prefect_env["PREFECT_API_URL"], prefect_env, embedded)


def child_env(stack: Stack) -> dict[str, str]:
    env = {
        k: v for k, v in stack.prefect_env.items() if k != "PREFECT_SERVER_DATABASE_CONNECTION_URL"
    }
    env["DATABASE_URL"] = stack.database_url
    return env


def run_up(settings: Settings, *, prefect_port: int | None = None) -> None:
    supervisor = system.Supervisor(settings.data_dir.resolve() / "logs")

    def _stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        typer.echo("starting taskflow-jobs (Ctrl-C stops everything)…")
        stack = start_stack(settings, supervisor, prefect_port=prefect_port)
        where = "embedded PostgreSQL" if stack.embedded else "DATABASE_URL"
        typer.echo(f"  database     {db.redact_url(stack.database_url)} ({where})")
        typer.echo(f"  Prefect UI   {stack.prefect_api_url.removesuffix('/api')}")
        typer.echo(f"  logs         {supervisor.log_dir}")
        typer.echo("running: database, migrations, Prefect server. Press Ctrl-C to stop.")
        while True:
            dead = supervisor.exited()
            if dead:
                names = ", ".join(
                    f"{c.name} (exit {c.process.returncode}, log {c.log_path})" for c in dead
                )
                raise RuntimeError(f"a component stopped unexpectedly: {names}")
            time.sleep(1)
    except KeyboardInterrupt:
        typer.echo("\nstopping…")
    finally:
        supervisor.stop()
        typer.echo(f"stopped (pid {os.getpid()}).")
