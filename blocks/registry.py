"""Reading the blocks back over the environment: the settings a flow or `consume` runs with."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from prefect.blocks.core import Block
from prefect.blocks.notifications import SlackWebhook
from prefect.settings import (
    PREFECT_API_REQUEST_TIMEOUT,
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    temporary_settings,
)
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


class BlockUnreadable(SettingsError):
    """A block this process needs could not be read; it must not guess the value."""


# Which block holds what, and the setting that, when explicit, makes the block unneeded.
BLOCK_KEYS = {"email": "email_provider", "slack": "slack_webhook_url", "database": "database_url"}
ALL_BLOCKS = tuple(BLOCK_KEYS)


def _load(block_type: type[B], name: str, timeout: float) -> B | None:
    """One read with a short deadline and no client retries (the caller retries)."""
    try:
        quick = {PREFECT_API_REQUEST_TIMEOUT: timeout, PREFECT_CLIENT_MAX_RETRIES: 0}
        with temporary_settings(quick):
            # _sync: flows may be async (email-dispatch); this is a short blocking read
            return block_type.load(name, _sync=True)  # type: ignore[call-arg, return-value]
    except ValueError as exc:
        if "Unable to find block document" in str(exc):
            return None  # never created: the environment's value stands
        raise


def _load_patiently(
    block_type: type[B], name: str, env: str, base: Settings, wait: float
) -> B | None:
    """Read a block, retrying for `wait` seconds; then fail naming it."""
    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        try:
            return _load(block_type, name, base.prefect_call_timeout)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            if time.monotonic() + delay > deadline:
                raise BlockUnreadable(
                    f"cannot read the Prefect block {name!r} ({reason}); not falling back to "
                    f"a default: make the Prefect API reachable, or set {env} in the "
                    "environment (an explicit setting needs no block)"
                ) from None
            log.warning("Prefect block %r unreadable (%s); retrying in %.1fs", name, reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def settings_from_blocks(
    base: Settings, needs: Iterable[str] = ALL_BLOCKS, *, wait: float | None = None
) -> Settings:
    """`base` (the environment) with what it leaves unset taken from the blocks.

    A setting given explicitly in the environment wins, and a block whose key setting
    (EMAIL_PROVIDER, SLACK_WEBHOOK_URL, DATABASE_URL) is explicit is not read at all, so
    a process configured by its environment runs whether or not Prefect answers. A block
    that is needed but cannot be read is an error after TASKFLOW_BLOCKS_WAIT seconds of
    retries (`BlockUnreadable`), never a silent default. Without a Prefect API there are
    no blocks: the environment settings are used as they are. `wait` overrides
    TASKFLOW_BLOCKS_WAIT (a background refresh tries once).
    """
    if not prefect_api_configured():
        return base
    names = BlockNames(base.block_prefix)
    wait = base.blocks_wait if wait is None else wait
    explicit = {f for f in base.model_fields_set if getattr(base, f) is not None}
    wanted = {b for b in needs if BLOCK_KEYS[b] not in explicit}
    updates: dict[str, object] = {}
    if "email" in wanted:
        email = _load_patiently(TaskflowEmail, names.email, "EMAIL_PROVIDER", base, wait)
        if email is not None:
            updates.update({n: getattr(email, n) for n in EMAIL_FIELDS if n not in explicit})
    if "slack" in wanted:
        with apprise_quiet():
            slack = _load_patiently(SlackWebhook, names.slack, "SLACK_WEBHOOK_URL", base, wait)
        if slack is not None:
            updates["slack_webhook_url"] = slack.url
    if "database" in wanted:
        database = _load_patiently(SqlAlchemyConnector, names.database, "DATABASE_URL", base, wait)
        if database is not None:
            updates["database_url"] = psycopg_url(database)
    if not updates:
        return base
    try:
        return Settings.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(
            f"invalid value in a {names.prefix}-* Prefect block: {problems}"
        ) from None
