"""Pure logic of the foundation: settings errors, URL redaction, the query loader."""

from __future__ import annotations

import pytest

from taskflow_jobs.db import redact_url
from taskflow_jobs.settings import SettingsError, load_settings
from taskflow_jobs.sql import parse_queries, queries


def test_bad_settings_name_the_variable_and_hide_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PORT", "not-a-port")
    monkeypatch.setenv("APP_TIMEZONE", "Mars/Olympus")
    monkeypatch.setenv("EMAIL_PROVIDER", "pigeon")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    for name in ("SMTP_PORT", "APP_TIMEZONE", "EMAIL_PROVIDER"):
        assert name in message


def test_aliased_settings_are_named_by_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFLOW_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="TASKFLOW_LOG_FORMAT"):
        load_settings()


def test_secret_values_never_appear_in_settings_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_URL", "ftp://hunter2-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_redact_url_hides_the_password() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact_url("postgresql://postgres@/x?host=/tmp") == "postgresql://postgres@/x?host=/tmp"


def test_parse_queries_splits_named_blocks() -> None:
    text = "-- one --\n-- first\nSELECT 1;\n\n-- two --\n-- second\nSELECT %(x)s;\n"
    assert parse_queries(text) == {"one": "-- first\nSELECT 1;", "two": "-- second\nSELECT %(x)s;"}


def test_every_named_query_has_a_description() -> None:
    for name, sql in queries().items():
        assert sql.startswith("-- "), f"query {name} has no one-line description"
