"""Reading the blocks back over the environment: the settings a flow or `consume` runs with."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from prefect.blocks.core import Block
from prefect.blocks.notifications import SlackWebhook
from prefect.settings import PREFECT_API_URL
from prefect_sqlalchemy import SqlAlchemyConnector
from pydantic import ValidationError

from blocks.database import psycopg_url
from blocks.email import TaskflowEmail
from taskflow_jobs.settings import Settings, SettingsError

log = logging.getLogger(__name__)
B = TypeVar("B", bound=Block)

# the block declares the email settings; the environment names are the same fields
EMAIL_FIELDS = tuple(TaskflowEmail.model_fields)


@dataclass(frozen=True)
class BlockNames:
    prefix: str = "taskflow"

    @property
    def slack(self) -> str:
        return f"{self.prefix}-slack"

    @property
    def email(self) -> str:
        return f"{self.prefix}-email"

    @property
    def database(self) -> str:
        return f"{self.prefix}-database"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}-alerts"


@contextmanager
def apprise_quiet() -> Iterator[None]:
    """Building a SlackWebhook block makes Apprise parse its URL, and Apprise logs an ERROR
    for any Slack-compatible URL that is not hooks.slack.com (a proxy, Mattermost, a test
    stand-in). We never send through Apprise (`taskflow_jobs.reports.slack` posts the JSON itself),
    so that line is noise in every flow run's log: silence Apprise while the block is built.
    """
    apprise = logging.getLogger("apprise")
    was_disabled = apprise.disabled
    apprise.disabled = True
    try:
        yield
    finally:
        apprise.disabled = was_disabled


def prefect_api_configured() -> bool:
    """Without PREFECT_API_URL, Prefect would start a throwaway server just to find no blocks."""

    return bool(PREFECT_API_URL.value())


def _load(block_type: type[B], name: str) -> B | None:
    try:
        # _sync: flows may be async (email-dispatch); this is a short blocking read either way
        return block_type.load(name, _sync=True)  # type: ignore[call-arg, return-value]
    except ValueError as exc:
        if "Unable to find block document" in str(exc):
            return None
        raise


def settings_from_blocks(base: Settings) -> Settings:
    """`base` (the environment) with the values of the blocks that exist laid over it.

    Without a Prefect API, or when it fails, the environment settings are used as they are.
    """
    if not prefect_api_configured():
        return base
    names = BlockNames(base.block_prefix)
    updates: dict[str, object] = {}
    try:
        email = _load(TaskflowEmail, names.email)
        with apprise_quiet():
            slack = _load(SlackWebhook, names.slack)
        database = _load(SqlAlchemyConnector, names.database)
    except Exception as exc:
        log.warning("Prefect blocks unavailable (%s); using environment settings", exc)
        return base
    if email is not None:
        updates.update({name: getattr(email, name) for name in EMAIL_FIELDS})
    if slack is not None:
        updates["slack_webhook_url"] = slack.url
    if database is not None:
        updates["database_url"] = psycopg_url(database)
    try:
        return Settings.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(
            f"invalid value in a {names.prefix}-* Prefect block: {problems}"
        ) from None
