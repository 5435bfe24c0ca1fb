"""The Typer app and what every command module shares: `command`, `CliError`, settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any

import psycopg
import typer

from taskflow_jobs import db
from taskflow_jobs.cli import help as command_help
from taskflow_jobs.errors import DeployError, PortInUse, StartupError
from taskflow_jobs.logs import configure_logging
from taskflow_jobs.settings import Settings, SettingsError, get_settings

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode=None,
)


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit code 1."""


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one clear line on stderr instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (
            CliError,
            SettingsError,
            db.DatabaseUnavailable,
            db.MigrationChanged,
            PortInUse,
            StartupError,
            DeployError,
        ) as exc:
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
        name = args[0] if args else kwargs.get("name") or fn.__name__.replace("_", "-")
        kwargs.setdefault("short_help", command_help.SUMMARY.get(name))
        kwargs.setdefault("epilog", command_help.epilog(name))
        return app.command(*args, **kwargs)(_friendly(fn))

    return register


def settings() -> Settings:
    return get_settings()


def database_url() -> str:
    return db.database_url(settings())


def default_prefect_api(current: Settings) -> None:
    """Without PREFECT_API_URL, talk to the Prefect server that `taskflow-jobs up` runs.

    Set before Prefect is imported, so Prefect's own settings pick it up; an explicit
    PREFECT_API_URL (another server, Prefect Cloud) always wins.
    """
    if not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{current.prefect_port}/api"


@app.callback()
def _setup(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log debug lines too (to stderr).")
    ] = False,
) -> None:
    """taskflow-jobs: TaskFlow's background jobs (email queue, cron reports, webhooks).

    Every setting is an environment variable (or a line in .env); each command's --help
    lists the ones that matter for it. `make run` runs `taskflow-jobs up`.
    """

    try:
        configure_logging(settings(), verbose=verbose)
        default_prefect_api(settings())
    except SettingsError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
