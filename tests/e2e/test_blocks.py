"""Blocks on a real Prefect server: created from the environment, never clobbering UI edits."""

from __future__ import annotations

from pydantic import SecretStr

from blocks import BlockNames, TaskflowEmail, settings_from_blocks
from deployments.blocks import register_blocks
from taskflow_jobs.settings import load_settings


def env_settings(**overrides):
    values = {
        "email_provider": "smtp",
        "smtp_host": "smtp.example.com",
        "smtp_password": SecretStr("smtp-pass-123"),
        "slack_webhook_url": SecretStr("https://hooks.slack.com/services/T1/B1/tok3n"),
        "database_url": "postgresql://app:db-pass-9@db.internal:5432/taskflow?sslmode=require",
    }
    return load_settings(**{**values, **overrides})


def test_blocks_are_created_once_and_ui_edits_survive_redeploys(prefect_api) -> None:
    from prefect.client.orchestration import get_client

    settings = env_settings()
    names = BlockNames(settings.block_prefix)

    created = register_blocks(settings)
    assert created == {
        names.email: "created",
        names.slack: "created",
        names.alerts: "created",
        names.database: "created",
    }

    edited = TaskflowEmail.load(names.email)  # an operator edits the block in the UI
    edited.smtp_host = "smtp.edited.example.com"
    edited.save(names.email, overwrite=True)
    again = register_blocks(settings)
    assert all(what.startswith("kept") for what in again.values())

    seen = settings_from_blocks(load_settings(database_url=None))
    assert seen.smtp_host == "smtp.edited.example.com"
    assert seen.email_provider == "smtp"
    assert seen.smtp_password.get_secret_value() == "smtp-pass-123"
    assert seen.slack_webhook_url.get_secret_value().endswith("/tok3n")
    assert seen.database_url == settings.database_url  # query parameters survive

    with get_client(sync_client=True) as client:
        stored = client.read_block_document_by_name(
            names.slack, "slack-webhook", include_secrets=False
        )
        email = client.read_block_document_by_name(
            names.email, "taskflow-email", include_secrets=False
        )
        alerts = client.read_block_document_by_name(
            names.alerts, "custom-webhook", include_secrets=False
        )
    assert "tok3n" not in str(stored.data) and "smtp-pass-123" not in str(email.data)
    assert "tok3n" not in str(alerts.data), "the alerts block keeps the URL as a secret"

    replaced = register_blocks(settings, overwrite=True)
    assert replaced[names.email] == "updated"
    assert settings_from_blocks(load_settings()).smtp_host == "smtp.example.com"

    # what the environment gives explicitly wins over the block
    assert settings_from_blocks(load_settings(smtp_host="from-env")).smtp_host == "from-env"


def test_unset_settings_create_no_block_and_the_environment_stays(prefect_api) -> None:
    settings = load_settings(slack_webhook_url=None, database_url=None)
    names = BlockNames(settings.block_prefix)
    outcome = register_blocks(settings)
    assert outcome[names.slack].startswith("not created: SLACK_WEBHOOK_URL is unset")
    assert outcome[names.database].startswith("not created: DATABASE_URL is unset")
    base = load_settings(slack_webhook_url=None, database_url=None, smtp_port=2525)
    overlaid = settings_from_blocks(base)
    assert overlaid.slack_webhook_url is None and overlaid.database_url is None
    assert overlaid.smtp_port == 2525, "an explicit environment setting wins over a block"


def test_without_a_prefect_api_the_environment_is_used(monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        base = load_settings(smtp_host="only-env")
        assert settings_from_blocks(base) is base


def test_an_explicit_key_setting_needs_no_block(prefect_api, monkeypatch) -> None:
    """EMAIL_PROVIDER and DATABASE_URL in the environment: those blocks are not read, so
    Prefect being unreachable does not matter."""
    register_blocks(env_settings())
    base = load_settings(
        email_provider="console", database_url="postgresql://env/db", slack_webhook_url=None
    )
    monkeypatch.setattr("blocks.registry._load", _refuse)
    seen = settings_from_blocks(base, needs=("email", "database"))
    assert seen is base


def _refuse(*_args, **_kwargs):
    raise AssertionError("no block should be read")


def test_an_unreadable_block_is_an_error_naming_it_never_a_default(prefect_api) -> None:
    """A frozen Prefect server (SIGSTOP): the needed email block cannot be read in time."""
    import os
    import signal

    import pytest

    from blocks.registry import BlockUnreadable

    register_blocks(env_settings())
    base = load_settings(database_url="postgresql://env/db", prefect_call_timeout=1)
    pid = prefect_api.supervisor.children[0].process.pid
    os.killpg(pid, signal.SIGSTOP)
    try:
        with pytest.raises(BlockUnreadable) as error:
            settings_from_blocks(base, needs=("email",), wait=2)
    finally:
        os.killpg(pid, signal.SIGCONT)
    message = str(error.value)
    assert f"{BlockNames(base.block_prefix).email!r}" in message and "EMAIL_PROVIDER" in message
