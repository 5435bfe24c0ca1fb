"""Demo data for `make run` and `demo`: three users, a week of task history, one assignment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from taskflow_jobs import db
from taskflow_jobs.sql import query

DEMO_USERS = (("Ada Lovelace", "ada@example.com"), ("Grace Hopper", "grace@example.com"),
              ("Alan Turing", "alan@example.com"))  # fmt: skip
HISTORY_TASKS = 60


def seed_if_empty(url: str) -> str | None:
    """Users (welcome emails), a week of task history and one assignment, into an empty
    database; says what it added, or None when the database already had users."""
    with db.transaction(url) as conn:
        if conn.execute(query("demo_user_count")).fetchone()["n"]:
            return None
        ids = []
        for days_ago, (name, email) in enumerate(DEMO_USERS):
            created = datetime.now(UTC) - timedelta(days=days_ago, hours=1)
            row = conn.execute(
                query("demo_signup"), {"email": email, "name": name, "created_at": created}
            ).fetchone()
            ids.append(row["id"])
        conn.execute(query("demo_history"), {"creator": ids[0], "count": HISTORY_TASKS})
        conn.execute(
            query("demo_assign"),
            {"title": "Review the launch checklist", "assignee": ids[1], "creator": ids[0]},
        )
    return (
        f"{len(DEMO_USERS)} users (welcome emails), {HISTORY_TASKS} tasks over the last "
        "8 days, 1 assignment (email)"
    )
