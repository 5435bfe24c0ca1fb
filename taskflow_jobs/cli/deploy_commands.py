"""Deployment commands: deploy."""

from __future__ import annotations

from typing import Annotated

import typer

from taskflow_jobs.cli.base import CliError, command, settings


@command()
def deploy(
    overwrite_blocks: Annotated[
        bool,
        typer.Option(help="Replace existing blocks with the environment's values (UI edits lost)"),
    ] = False,
    api_url: Annotated[
        str | None, typer.Option(help="Prefect API URL [PREFECT_API_URL]", show_default=False)
    ] = None,
) -> None:
    """Create the work pool, blocks and variable, then `prefect --no-prompt deploy --all`."""
    # deferred: loads Prefect (~1.5 s); only this command needs it
    from deployments import (
        deploy as deploying,
    )

    try:
        result = deploying.deploy(
            settings(), api=api_url, overwrite_blocks=overwrite_blocks, echo=typer.echo
        )
    except deploying.DeployError as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"deployed {len(result.deployments)} deployment(s) to {result.api_url}:")
    for d in result.deployments:
        schedules = ", ".join(d.schedules) or "no schedule"
        name = f"{d.flow}/{d.name}"
        typer.echo(f"  {name:<31} {schedules}; concurrency {d.concurrency}")
