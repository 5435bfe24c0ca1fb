"""What every flow shares."""

from __future__ import annotations

from taskflow_jobs.settings import Settings, get_settings


def flow_settings() -> Settings:
    """The settings a flow run uses: the one place flows load configuration.

    For now the environment (`get_settings`); deployments will read Prefect blocks here.
    """
    return get_settings()
