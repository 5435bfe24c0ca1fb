"""Events for Prefect kept in PostgreSQL until Prefect accepts them (a transactional outbox).

A dead letter must reach the automations that alert on it even when the Prefect API is
down when it happens, or when the process dies before Prefect is back. So a trigger on
`jobs.dead_letters` writes its event row in the same transaction (migration 0055), and
whoever talks to Prefect next (the `consume` observer, the `email-dispatch` flow)
publishes the rows through `POST /api/events` and deletes them. Each row carries its own
event id, so a publish repeated after a lost answer is one event, not two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from taskflow_jobs.db import transaction
from taskflow_jobs.sql import query

log = logging.getLogger(__name__)

DEAD_LETTER_EVENT = "taskflow.email.dead-lettered"
PUBLISH_BATCH = 200

# Posts a list of events (Prefect's JSON shape) and raises if Prefect did not take them.
PostEvents = Callable[[list[dict[str, Any]]], None]


def as_event(row: dict[str, Any], related: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """An outbox row as the JSON of a Prefect event."""
    return {
        "id": str(row["event_id"]),
        "occurred": row["occurred_at"].isoformat(),
        "event": row["event"],
        "resource": row["resource"],
        "related": related or [],
        "payload": row["payload"],
    }


def publish(
    url: str,
    post: PostEvents,
    *,
    related: list[dict[str, str]] | None = None,
    limit: int = PUBLISH_BATCH,
) -> int:
    """Publish every waiting event (oldest first); returns how many Prefect accepted.

    Rows stay locked while they are posted, so two publishers never post the same row at
    once; a post that fails rolls back and leaves them for the next attempt. `related`
    names who publishes (the flow run), as Prefect does for events emitted in a run.
    """
    published = 0
    while True:
        with transaction(url) as conn:
            rows = conn.execute(query("outbox_take"), {"limit": limit}).fetchall()
            if not rows:
                return published
            post([as_event(row, related) for row in rows])
            conn.execute(query("outbox_delete"), {"ids": [row["id"] for row in rows]})
        published += len(rows)
        if len(rows) < limit:
            return published


def waiting(url: str) -> int:
    with transaction(url) as conn:
        return int(conn.execute(query("outbox_count")).fetchone()["n"])
