"""Writing the blocks from the environment: what `taskflow-jobs deploy` (and `up`) create."""

from __future__ import annotations

from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect_sqlalchemy import SqlAlchemyConnector
from pydantic import SecretStr

from blocks.database import connector_for
from blocks.email import TaskflowEmail
from blocks.registry import EMAIL_FIELDS, BlockNames, apprise_quiet
from taskflow_jobs.settings import Settings


def _slack_block(url: SecretStr) -> SlackWebhook:
    with apprise_quiet():
        return SlackWebhook(url=url)


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
    SqlAlchemyConnector.register_type_and_schema()
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
            names.database,
            "sqlalchemy-connector",
            connector_for(settings.database_url) if settings.database_url else None,
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
