"""Connections to PostgreSQL: dict rows, fast JSON, and errors that never show a password."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

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


def check_idle(conn: psycopg.Connection[Any]) -> None:
    """A pool's check of a connection before handing it out, without a round trip.

    An idle connection has nothing to read unless the server wrote to it: the notice a
    restart or an administrator's terminate sends, or the end of the stream. Only then is
    it checked with a query (psycopg_pool's own check), which raises if it is dead; the
    pool then replaces it. A check by query on every checkout was one of a settle's four
    round trips."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise psycopg.OperationalError("the connection is not idle")
    if has_input(conn):
        ConnectionPool.check_connection(conn)  # reads what arrived; raises if it is dead


def has_input(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server wrote to this idle connection (a notice, or it closed it)."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def redact_reason(reason: str, url: str) -> str:
    password = urlsplit(url).password
    return reason.replace(password, "***") if password else reason


@contextmanager
def transaction(url: str) -> Iterator[Connection]:
    """One connection, one transaction: committed on success, rolled back on error."""
    with connect(url) as conn, conn.transaction():
        yield conn
