"""What `consume` delivered while Prefect was unreachable, kept in PostgreSQL until Prefect
has it (migration 0095).

The observer of each `consume` counts the outcomes of an outage in memory and checkpoints
them here every second. When Prefect answers again, it reports its outage as a run of its
own and forgets the row. A consumer killed before that leaves its row behind; it stops
being refreshed, and whoever reaches Prefect next (any consumer) reports it, so the counts
of an outage survive the process that made them. Rows are locked while they are reported,
so two consumers never report the same one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from taskflow_jobs.db import connect, transaction
from taskflow_jobs.sql import query


def checkpoint(
    url: str,
    row_id: int | None,
    *,
    consumer: str,
    started: datetime,
    reason: str,
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
) -> int:
    """Save an open outage's counts; returns its row id (new on the first call)."""
    params = {
        "id": row_id,
        "consumer": consumer,
        "started": started,
        "reason": reason,
        "summary": Jsonb(summary),
        "rows": Jsonb(rows),
    }
    with connect(url, autocommit=True, connect_timeout=2) as conn:
        if row_id is None:
            return int(conn.execute(query("outage_open"), params).fetchone()["id"])
        conn.execute(query("outage_checkpoint"), params)
        return row_id


def forget(url: str, row_id: int) -> None:
    with connect(url, autocommit=True, connect_timeout=2) as conn:
        conn.execute(query("outage_forget"), {"ids": [row_id]})


def report_orphans(url: str, report: Callable[[dict[str, Any]], None], stale: float) -> int:
    """Report (and forget) the outages not checkpointed for `stale` seconds; a report that
    raises leaves them for the next attempt. Returns how many were reported."""
    with transaction(url) as conn:
        rows = conn.execute(query("outage_take_orphans"), {"stale": stale}).fetchall()
        for row in rows:
            report(row)
        if rows:
            conn.execute(query("outage_forget"), {"ids": [row["id"] for row in rows]})
    return len(rows)
