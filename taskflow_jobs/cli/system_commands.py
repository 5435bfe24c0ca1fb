"""The local system: up."""

from __future__ import annotations

from typing import Annotated

import typer

from taskflow_jobs.cli.base import command, settings


@command()
def up(
    prefect_port: Annotated[int | None, typer.Option(help="Port of the Prefect server")] = None,
) -> None:
    """Start the whole system on embedded defaults until Ctrl-C (what `make run` runs)."""
    from taskflow_jobs.local import run_up

    run_up(settings(), prefect_port=prefect_port)
