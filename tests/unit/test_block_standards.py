"""Our custom block passes Prefect's own BlockStandardTestSuite.

The suite's logo check downloads `_logo_url`; with no internet here the test serves the
project's own logo (docs/taskflow-email-logo.png) from a local HTTP server instead and
points the block at it, so the check still opens and measures a real image.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import HttpUrl

from blocks.email import TaskflowEmail
from blocks.registry import EMAIL_FIELDS
from taskflow_jobs.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def local_logo() -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(DOCS))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/taskflow-email-logo.png"
    finally:
        server.shutdown()


class TestTaskflowEmailBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, local_logo: str, monkeypatch: pytest.MonkeyPatch) -> type[Block]:
        monkeypatch.setattr(TaskflowEmail, "_logo_url", HttpUrl(local_logo))
        return TaskflowEmail


def test_the_email_fields_are_declared_once() -> None:
    assert tuple(TaskflowEmail.model_fields) == EMAIL_FIELDS
    assert set(EMAIL_FIELDS) <= set(Settings.model_fields)
    for name in EMAIL_FIELDS:
        default = Settings.model_fields[name].default
        assert TaskflowEmail.model_fields[name].default == default, name
