"""Fixtures for tests that run on both PostgreSQL servers: the embedded 18 of the session
(tests/conftest.py) and Debian's PostgreSQL 15, the major version Supabase runs.

Roles are global to a cluster, so the Supabase tests, which create Supabase's roles, get
clusters of their own: the other tests keep seeing a cluster without them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from taskflow_jobs import db
from tests.support.databases import create_database, drop_database
from tests.support.debian import postgres15_cluster

SERVERS = ("postgres-18-embedded", "postgres-15-debian")
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg15_admin_url() -> Iterator[str]:
    with postgres15_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def supabase_pg15_admin_url() -> Iterator[str]:
    with postgres15_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def supabase_pg18_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = db.embedded_server(tmp_path_factory.mktemp("pg18-supabase"), cleanup_mode="delete")
    yield f"postgresql://postgres@/postgres?host={server.get_postmaster_info().socket_dir}"
    server.cleanup()


@pytest.fixture(params=SERVERS)
def server_admin_url(request: pytest.FixtureRequest) -> str:
    """The admin URL of one server; tests that take it run once on each."""
    name = "pg_admin_url" if request.param == SERVERS[0] else "pg15_admin_url"
    return request.getfixturevalue(name)


@pytest.fixture(params=SERVERS)
def supabase_admin_url(request: pytest.FixtureRequest) -> str:
    """Like server_admin_url, on the clusters where Supabase's roles may be created."""
    name = f"supabase_pg{18 if request.param == SERVERS[0] else 15}_admin_url"
    return request.getfixturevalue(name)


def _database(admin_url: str) -> Iterator[str]:
    name = f"b_{os.getpid()}_{next(_counter)}"
    yield create_database(admin_url, name)
    drop_database(admin_url, name)


@pytest.fixture
def blank_database_url(server_admin_url: str) -> Iterator[str]:
    """An empty database on each server in turn."""
    yield from _database(server_admin_url)


@pytest.fixture
def supabase_blank_url(supabase_admin_url: str) -> Iterator[str]:
    yield from _database(supabase_admin_url)
