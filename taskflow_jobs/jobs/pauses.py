"""Pause and resume a queue, or one message type of it.

A pause is a row in `jobs.pauses`; `jobs.claim` passes over paused messages, which stay
queued in their order and go out, oldest first, once resumed. The row is the switch
itself, so a pause holds whatever else is down; the Prefect variable an operator flips
in the UI is mirrored into it (`monitoring/pause_switch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskflow_jobs.db import Connection
from taskflow_jobs.sql import query

EVERY_TYPE = "*"
CLI, PREFECT = "cli", "prefect"


@dataclass(frozen=True)
class Pause:
    queue: str
    message_type: str  # "*" = the whole queue
    paused_at: datetime
    source: str
    paused_for_seconds: float

    @property
    def what(self) -> str:
        if self.message_type == EVERY_TYPE:
            return f"queue {self.queue}"
        return f"{self.message_type} messages of {self.queue}"

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "type": self.message_type,
            "paused_at": self.paused_at.isoformat(),
            "source": self.source,
            "paused_for_seconds": round(self.paused_for_seconds, 1),
        }


def pause(
    conn: Connection, queue: str, message_type: str | None = None, *, source: str = CLI
) -> datetime:
    """Pause `queue` (or only `message_type`); returns when the pause began (kept if it was)."""
    params = {"queue": queue, "type": message_type or EVERY_TYPE, "source": source}
    return conn.execute(query("pause"), params).fetchone()["paused_at"]


def resume(conn: Connection, queue: str, message_type: str | None = None) -> list[str]:
    """Lift the pause of `message_type` ("*" = the whole-queue pause), or every pause of the
    queue with None; returns the types that were paused. Consumers wake at once."""
    rows = conn.execute(query("resume"), {"queue": queue, "type": message_type}).fetchall()
    return [r["message_type"] for r in rows]


def set_pauses(conn: Connection, queue: str, types: list[str], *, source: str) -> None:
    """Make the queue's pauses exactly `types` (kept ones keep their start)."""
    conn.execute(query("set_pauses"), {"queue": queue, "types": types, "source": source})


def pauses(conn: Connection, queue: str | None = None) -> list[Pause]:
    return [Pause(**row) for row in conn.execute(query("pauses"), {"queue": queue}).fetchall()]
