"""Every setting of taskflow-jobs, read from the environment (and `.env`).

The names are the contract in ARCHITECTURE.md; a bad value fails with a message that
names the environment variable (see `load_settings`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from taskflow_jobs.errors import SettingsError
from taskflow_jobs.settings.delivery import DeliverySettings, EmailProvider
from taskflow_jobs.settings.operations import OperationsSettings
from taskflow_jobs.settings.service import ServiceSettings

EMAIL_QUEUE = "email_notifications"

__all__ = [
    "EMAIL_QUEUE",
    "EmailProvider",
    "Settings",
    "SettingsError",
    "get_settings",
    "load_settings",
]


class Settings(DeliverySettings, ServiceSettings, OperationsSettings):
    """All of them; each concern's fields and checks are in its own module."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        # an empty variable means unset (children get SLACK_WEBHOOK_URL="" to turn it off)
        env_ignore_empty=True,
    )

    # --- storage -------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="PostgreSQL URL of the app database; unset = embedded server"
    )
    data_dir: Path = Field(
        Path(".data"),
        validation_alias="TASKFLOW_DATA_DIR",
        description="Embedded Postgres, Prefect home and the console outbox live here",
    )


def _env_name(loc: tuple) -> str:
    field = str(loc[0]) if loc else "?"
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    return str(alias if isinstance(alias, str) else field).upper()


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


def load_settings(**overrides: object) -> Settings:
    """Read the settings; raise SettingsError naming every bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"{_env_name(err['loc'])}: {_plain(err['msg'])}" if err["loc"] else _plain(err["msg"])
            for err in exc.errors()
        ]
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call `get_settings.cache_clear()`)."""
    return load_settings()
