"""Fixtures for email dispatch tests: real SMTP and SendGrid stand-ins, settings, a clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskflow_jobs.settings import Settings, load_settings
from tests.support.dispatch_helpers import Clock
from tests.support.email_servers import SmtpServer, start_smtp_server, write_self_signed_cert


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[SmtpServer]:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))  # our client verifies the server
    server = start_smtp_server(*tls_files)
    yield server
    server.controller.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_settings(database_url: str, data_dir: Path):
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "data_dir": data_dir,
            "email_backoff_base": 10.0,
            "email_backoff_cap": 60.0,
            "email_batch_size": 50,
            "email_concurrency": 2,
        }
        values.update(overrides)
        return load_settings(**values)

    return build
