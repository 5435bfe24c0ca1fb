"""PLACEHOLDER for the email-dispatch flow, replaced by issue 3's real flow at merge.

It exists only so `prefect deploy --all` can import every entrypoint of prefect.yaml on
this branch; it sends nothing.
"""

from __future__ import annotations

from prefect import flow


@flow(name="email-dispatch", log_prints=True)
def email_dispatch(batch_size: int | None = None, time_budget: float | None = None) -> dict:
    """Placeholder replaced by issue 3 at merge: does nothing and reports nothing sent."""
    return {"placeholder": True, "sent": 0}
