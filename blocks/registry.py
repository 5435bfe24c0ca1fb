"""Create the blocks from the environment, and read them back over the environment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
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


def _slack_block(url: SecretStr) -> SlackWebhook:
    with _apprise_quiet():
        return SlackWebhook(url=url)


def prefect_api_configured() -> bool:
    """Without PREFECT_API_URL, Prefect would start a throwaway server just to find no blocks."""

    return bool(PREFECT_API_URL.value())


def _exists(name: str, block_type_slug: str) -> bool:

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
            block.save(name, overwrite=True)  # type: ignore[attr-defined]
            outcome[name] = "updated" if exists else "created"
    return outcome


def _load(block_type: type, name: str) -> object | None:
    try:
        # _sync: flows may be async (email-dispatch); this is a short blocking read either way
        return block_type.load(name, _sync=True)  # type: ignore[attr-defined]
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
        with _apprise_quiet():
            slack = _load(SlackWebhook, names.slack)
        database = _load(Secret, names.database_url)
    except Exception as exc:
        log.warning("Prefect blocks unavailable (%s); using environment settings", exc)
        return base
    if email is not None:
        updates.update({name: getattr(email, name) for name in EMAIL_FIELDS})
    if slack is not None:
        updates["slack_webhook_url"] = slack.url  # type: ignore[attr-defined]
    if database is not None:
        updates["database_url"] = str(database.get())  # type: ignore[attr-defined]
    try:
        return Settings.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(
            f"invalid value in a {names.prefix}-* Prefect block: {problems}"
        ) from None
