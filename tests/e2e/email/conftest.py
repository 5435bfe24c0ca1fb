"""A Prefect API for the email end-to-end tests: one `prefect_test_harness` per session
(a real Prefect server in a subprocess), shared by in-process flow runs and by the
`consume` subprocesses, which get its URL in their environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from taskflow_jobs.devstack.sendgrid_stub import StubServer
from tests.support.dispatch_helpers import API_KEY


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no internet here
    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def email_env(
    database_url: str, data_dir: Path, sendgrid: StubServer, prefect_api: str, tmp_path: Path
) -> dict[str, str]:
    """Environment of a taskflow-jobs process sending to the SendGrid stub."""
    return {
        "DATABASE_URL": database_url,
        "TASKFLOW_DATA_DIR": str(data_dir),
        "EMAIL_PROVIDER": "sendgrid",
        "SENDGRID_API_URL": sendgrid.url,
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_TIMEOUT": "5",
        "EMAIL_BATCH_SIZE": "10",
        "EMAIL_CONCURRENCY": "2",
        "EMAIL_BACKOFF_BASE": "1",
        "EMAIL_BACKOFF_CAP": "2",
        "EMAIL_POLL_INTERVAL": "0.5",
        "EMAIL_IDLE_TIMEOUT": "5",
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
