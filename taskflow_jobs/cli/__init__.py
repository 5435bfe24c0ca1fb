"""The `taskflow-jobs` command. Each module registers its commands on the shared app;
every command is a thin shell over a library module."""

from __future__ import annotations

import logging

from taskflow_jobs.cli import (  # noqa: F401 - each module registers its commands
    consent_commands,
    db_commands,
    deploy_commands,
    email_commands,
    queue_commands,
    status_commands,
    system_commands,
    webhook_commands,
)
from taskflow_jobs.cli.base import app


def main() -> None:
    logging.captureWarnings(True)
    app()


if __name__ == "__main__":
    main()
