"""The dispatcher's pool checks a connection before handing it out without a round trip
(`db.check_idle`), and still never hands out one the server has closed."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from taskflow_jobs.db import check_idle


def _pool(url: str, check) -> ConnectionPool:  # type: ignore[no-untyped-def]
    return ConnectionPool(
        url,
        min_size=1,
        max_size=1,
        kwargs={"row_factory": dict_row, "autocommit": True},
        open=True,
        check=check,
    )


def _terminate_pooled(conn: psycopg.Connection, pid: int) -> None:
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, "the backend did not go away"
        time.sleep(0.05)


@pytest.mark.parametrize("check", [check_idle, None], ids=["check_idle", "no check"])
def test_a_connection_the_server_closed_is_replaced_not_handed_out(
    database_url: str, conn: psycopg.Connection, check
) -> None:  # type: ignore[no-untyped-def]
    with _pool(database_url, check) as pool:
        with pool.connection() as pooled:
            pid = pooled.info.backend_pid
        _terminate_pooled(conn, pid)  # as a restart or an administrator would

        with pool.connection() as pooled:
            if check is None:  # the control: without a check the dead one is handed out
                with pytest.raises(psycopg.OperationalError):
                    pooled.execute("SELECT 1")
                return
            assert pooled.info.backend_pid != pid, "a new connection"
            assert pooled.execute("SELECT 1 AS ok").fetchone() == {"ok": 1}


@pytest.mark.parametrize(
    "check", [check_idle, ConnectionPool.check_connection], ids=["check_idle", "query check"]
)
def test_a_healthy_idle_connection_is_handed_out_without_a_query(
    database_url: str, conn: psycopg.Connection, check
) -> None:  # type: ignore[no-untyped-def]
    with _pool(database_url, check) as pool:
        with pool.connection() as pooled:
            pid = pooled.info.backend_pid
        before = _last_activity(conn, pid)
        for _ in range(5):
            with pool.connection() as pooled:
                assert pooled.info.backend_pid == pid, "the same connection, kept"
        if check is check_idle:
            assert _last_activity(conn, pid) == before, "no query was sent to check it"
        else:  # the control: psycopg_pool's check is a round trip per checkout
            assert _last_activity(conn, pid) != before


def _last_activity(conn: psycopg.Connection, pid: int) -> object:
    """When the backend last changed state (each query it runs changes it)."""
    row = conn.execute(
        "SELECT state_change FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    assert row is not None
    return row["state_change"]
