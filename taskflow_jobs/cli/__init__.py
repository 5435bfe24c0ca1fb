"""The `taskflow-jobs` command. Each module registers its commands on the shared app;
every command is a thin shell over a library module."""

from __future__ import annotations

import logging

from taskflow_jobs.cli import (  # noqa: F401 - register commands
    db_commands,
    system_commands,
    webhook_commands,  # issue 5: the receiver
)
from taskflow_jobs.cli.base import app


def main() -> None:
    logging.captureWarnings(True)
    app()


if __name__ == "__main__":
    main()
