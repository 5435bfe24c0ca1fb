"""Connections to PostgreSQL: dict rows, fast JSON, and errors that never show a password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from taskflow_jobs.errors import DatabaseUnavailable

# every connection we open returns rows as dicts
Connection = psycopg.Connection[dict[str, Any]]


def redact_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def connect(url: str, *, autocommit: bool = False, connect_timeout: int = 10) -> Connection:
    """A psycopg connection with dict rows; connection errors never show the password."""
    try:
        conn = psycopg.connect(
            url, autocommit=autocommit, row_factory=dict_row, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to {redact_url(url)}: {redact_reason(reason, url)}"
        ) from None
    # payloads are decoded by the thousand when claiming: orjson is several times faster
    set_json_loads(orjson.loads, conn)
    return conn


def redact_reason(reason: str, url: str) -> str:
    password = urlsplit(url).password
    return reason.replace(password, "***") if password else reason


@contextmanager
def transaction(url: str) -> Iterator[Connection]:
    """One connection, one transaction: committed on success, rolled back on error."""
    with connect(url) as conn, conn.transaction():
        yield conn
