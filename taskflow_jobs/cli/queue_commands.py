"""queue pause / resume: stop sending (a bad template, a provider incident) without
losing a message, then start again where the queue left off."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from taskflow_jobs import db
from taskflow_jobs.cli.base import CliError, _friendly, app, database_url, settings
from taskflow_jobs.jobs import pauses
from taskflow_jobs.settings import EMAIL_QUEUE

queue_app = typer.Typer(
    no_args_is_help=True,
    help="Pause or resume sending; paused messages stay queued in their order.",
)
app.add_typer(queue_app, name="queue")

TypeOption = Annotated[
    str | None, typer.Option("--type", help="Only this message type, e.g. notification")
]
QueueOption = Annotated[
    str, typer.Option("--queue", help="The queue (email_notifications is the only one).")
]


def _check_type(message_type: str | None) -> None:
    if message_type == pauses.EVERY_TYPE or message_type == "":
        raise CliError("--type: name a message type (leave it out to pause the whole queue)")


def _publish(url: str) -> str | None:
    """Mirror the change into the Prefect variable; a warning when Prefect is away."""
    # deferred: loads Prefect (~1.5 s); pause and resume work without it
    from taskflow_jobs.monitoring import pause_switch

    name = pause_switch.variable_name(settings())
    try:
        pause_switch.publish(url, name)
    except Exception as exc:
        return (
            f"Prefect unreachable ({type(exc).__name__}): the change holds in PostgreSQL; "
            f"the Prefect variable {name} still shows the old state"
        )
    return None


@queue_app.command("pause")
@_friendly
def pause(message_type: TypeOption = None, queue_name: QueueOption = EMAIL_QUEUE) -> None:
    """Stop claiming the queue (or one message type); consumers finish what they hold."""
    _check_type(message_type)
    url = database_url()
    with db.transaction(url) as conn:
        since = pauses.pause(conn, queue_name, message_type, source=pauses.CLI)
    warning = _publish(url)
    what = message_type or pauses.EVERY_TYPE
    typer.echo(json.dumps({"paused": queue_name, "type": what, "since": since.isoformat()}))
    if warning:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)


@queue_app.command("resume")
@_friendly
def resume(message_type: TypeOption = None, queue_name: QueueOption = EMAIL_QUEUE) -> None:
    """Lift the pause (without --type: every pause of the queue); sending resumes at once."""
    _check_type(message_type)
    url = database_url()
    with db.transaction(url) as conn:
        lifted = pauses.resume(conn, queue_name, message_type)
    warning = _publish(url) if lifted else None
    typer.echo(json.dumps({"resumed": queue_name, "types": lifted}))
    if warning:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
