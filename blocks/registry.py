"""Create the blocks from the environment, and read them back over the environment."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.blocks.system import Secret
from pydantic import SecretStr, ValidationError

from blocks.email import TaskflowEmail
from taskflow_jobs.settings import Settings, SettingsError

log = logging.getLogger(__name__)

EMAIL_FIELDS = (
    "email_provider",
    "email_from",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "smtp_password",
    "smtp_starttls",
    "sendgrid_api_key",
    "sendgrid_api_url",
)


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
    def database_url(self) -> str:
        return f"{self.prefix}-database-url"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}-alerts"


@contextmanager
def _apprise_quiet() -> Iterator[None]:
    """Building a SlackWebhook block makes Apprise parse its URL, and Apprise logs an ERROR
    for any Slack-compatible URL that is not hooks.slack.com (a proxy, Mattermost, a test
    stand-in). We never send through Apprise (`taskflow_jobs.slack` posts the JSON itself),
    so that line is noise in every flow run's log: silence Apprise while the block is built.
    """
    apprise = logging.getLogger("apprise")
    was_disabled = apprise.disabled
    apprise.disabled = True
    try:
        yield
    finally:
        apprise.disabled = was_disabled


def _slack_block(url: SecretStr) -> SlackWebhook:
    with _apprise_quiet():
        return SlackWebhook(url=url)


def prefect_api_configured() -> bool:
    """Without PREFECT_API_URL, Prefect would start a throwaway server just to find no blocks."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _exists(name: str, block_type_slug: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_block_document_by_name(name=name, block_type_slug=block_type_slug)
        except ObjectNotFound:
            return False
    return True


def alerts_block(webhook_url: SecretStr) -> CustomWebhookNotificationBlock:
    """Where the automations post: Slack's incoming-webhook JSON to the URL kept as a secret.

    Prefect's SlackWebhook block sends through Apprise's Slack plugin, which only talks to
    hooks.slack.com; this block posts `{"text": …}` to any Slack-compatible URL (Slack,
    Mattermost, a proxy), which also lets the tests watch alerts arrive.
    """
    return CustomWebhookNotificationBlock(
        name="taskflow-jobs alerts",
        url="{{webhook_url}}",
        method="POST",
        json_data={"text": "*{{subject}}*\n{{body}}"},
        secrets={"webhook_url": webhook_url.get_secret_value()},
        allow_private_urls=True,
    )


def _email_block(settings: Settings) -> TaskflowEmail:
    values = {name: getattr(settings, name) for name in EMAIL_FIELDS}
    values["email_provider"] = str(settings.email_provider)
    return TaskflowEmail(**values)


def register_blocks(settings: Settings, *, overwrite: bool = False) -> dict[str, str]:
    """Save the blocks from `settings`; existing ones are kept unless `overwrite`.

    Returns what happened to each block name: created, updated, kept, or not set.
    """
    names = BlockNames(settings.block_prefix)
    TaskflowEmail.register_type_and_schema()
    wanted: list[tuple[str, str, object | None, str]] = [
        (names.email, "taskflow-email", _email_block(settings), ""),
        (
            names.slack,
            "slack-webhook",
            _slack_block(settings.slack_webhook_url) if settings.slack_webhook_url else None,
            "SLACK_WEBHOOK_URL is unset",
        ),
        (
            names.alerts,
            "custom-webhook",
            alerts_block(settings.slack_webhook_url) if settings.slack_webhook_url else None,
            "SLACK_WEBHOOK_URL is unset (automations will not notify)",
        ),
        (
            names.database_url,
            "secret",
            Secret(value=SecretStr(settings.database_url)) if settings.database_url else None,
            "DATABASE_URL is unset (flows use the embedded database)",
        ),
    ]
    outcome: dict[str, str] = {}
    for name, slug, block, why_not in wanted:
        exists = _exists(name, slug)
        if exists and not overwrite:
            outcome[name] = "kept (already exists; --overwrite-blocks replaces it)"
        elif block is None:
            outcome[name] = f"not created: {why_not}"
        else:
            block.save(name, overwrite=True)
            outcome[name] = "updated" if exists else "created"
    return outcome


class BlockUnreadable(SettingsError):
    """A block this process needs could not be read; it must not guess the value."""


# Which block holds what, and the setting that, when explicit, makes the block unneeded.
BLOCK_KEYS = {"email": "email_provider", "slack": "slack_webhook_url", "database": "database_url"}
ALL_BLOCKS = tuple(BLOCK_KEYS)


def _load(block_type: type, name: str, timeout: float) -> object | None:
    """One read with a short deadline and no client retries (the caller retries)."""
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    try:
        with temporary_settings(
            {PREFECT_API_REQUEST_TIMEOUT: timeout, PREFECT_CLIENT_MAX_RETRIES: 0}
        ):
            # _sync: flows may be async (email-dispatch); this is a short blocking read
            return block_type.load(name, _sync=True)
    except ValueError as exc:
        if "Unable to find block document" in str(exc):
            return None  # never created: the environment's value stands
        raise


def _load_patiently(
    block_type: type, name: str, env: str, base: Settings, wait: float
) -> object | None:
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
        with _apprise_quiet():
            slack = _load_patiently(SlackWebhook, names.slack, "SLACK_WEBHOOK_URL", base, wait)
        if slack is not None:
            updates["slack_webhook_url"] = slack.url
    if "database" in wanted:
        database = _load_patiently(Secret, names.database_url, "DATABASE_URL", base, wait)
        if database is not None:
            updates["database_url"] = str(database.get())
    if not updates:
        return base
    try:
        return Settings.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(
            f"invalid value in a {names.prefix}-* Prefect block: {problems}"
        ) from None
