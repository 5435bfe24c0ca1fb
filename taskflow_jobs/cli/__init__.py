"""The `taskflow-jobs` command. Each module registers its commands on the shared app;
every command is a thin shell over a library module."""

from __future__ import annotations

import logging

import taskflow_jobs.cli.email_commands  # noqa: F401 - issue 3: consume, dispatch, dlq
from taskflow_jobs.cli import db_commands, system_commands  # noqa: F401 - register commands
from taskflow_jobs.cli.base import app


def main() -> None:
    logging.captureWarnings(True)
    app()


if __name__ == "__main__":
    main()
