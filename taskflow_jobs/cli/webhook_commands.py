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
    # deferred: loads FastAPI, uvicorn and the Prefect client; only this command needs them
    from taskflow_jobs.monitoring import backlog
    from taskflow_jobs.webhooks.serve import ReceiverConfigError, run_receiver

    current = settings()
    # the receiver is the long-lived process every installation runs: it also deletes the
    # cron runs a stopped worker left behind, before a worker submits them all at once
    backlog.start_pruning(current.email_sweep_interval)
    try:
        run_receiver(
            current, host=host, port=port, insecure_dev=insecure_dev, access_log=access_log
        )
    except ReceiverConfigError as exc:
        raise CliError(str(exc)) from None
