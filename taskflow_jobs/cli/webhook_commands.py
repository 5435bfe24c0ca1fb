"""The webhook receiver: webhooks."""

from __future__ import annotations

from typing import Annotated

import typer

from taskflow_jobs.cli.base import CliError, command, settings


@command()
def webhooks(
    host: Annotated[str | None, typer.Option(help="Listen address [WEBHOOK_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [WEBHOOK_PORT]")] = None,
    insecure_dev: Annotated[
        bool,
        typer.Option(
            "--insecure-dev",
            help="Local development only: accept unauthenticated requests when WEBHOOK_SECRET "
            "is unset (loopback addresses only)",
        ),
    ] = False,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (uvicorn access log)")
    ] = False,
) -> None:
    """Receive signed webhooks (Supabase, /api/notify, /api/events/NAME) until Ctrl-C."""
    # deferred: loads FastAPI and uvicorn; only this command needs them
    from taskflow_jobs.webhooks.serve import ReceiverConfigError, run_receiver

    try:
        run_receiver(
            settings(), host=host, port=port, insecure_dev=insecure_dev, access_log=access_log
        )
    except ReceiverConfigError as exc:
        raise CliError(str(exc)) from None
