"""The local system: up (what `make run` runs) and demo."""

from __future__ import annotations

from typing import Annotated

import typer

from taskflow_jobs.cli.base import command, settings


@command()
def up(
    prefect_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port of the Prefect server")
    ] = None,
) -> None:
    """Start the whole system on embedded defaults until Ctrl-C (what `make run` runs)."""
    # deferred: loads Prefect (~1.5 s); only this command needs it
    from taskflow_jobs.devstack.up import run_up

    run_up(settings(), prefect_port=prefect_port)


@command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the scratch data directory")] = False,
) -> None:
    """One pass on embedded defaults: signup, assignment and webhook emails, daily stats."""
    # deferred: loads Prefect (~1.5 s); only this command needs it
    from taskflow_jobs.devstack.demo import run_demo

    raise typer.Exit(run_demo(settings(), keep=keep, echo=typer.echo))
