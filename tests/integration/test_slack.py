"""Posting to a real local HTTP server standing in for Slack: retries, errors, no URL leaks."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from taskflow_jobs.net import free_port
from taskflow_jobs.reports import slack
from tests.support.slack_stub import WEBHOOK_PATH

TOKEN = WEBHOOK_PATH.rsplit("/", 1)[1]


def test_a_message_is_posted_as_json(slack_webhook) -> None:
    slack.post(SecretStr(slack_webhook.url), "*hello* from taskflow")
    (request,) = slack_webhook.requests
    assert request.status == 200
    assert request.body == {"text": "*hello* from taskflow"}


def test_rate_limit_waits_for_retry_after_then_delivers(slack_webhook) -> None:
    slack_webhook.answer(429, "rate_limited", {"Retry-After": "1"})
    slack.post(slack_webhook.url, "after a rate limit")
    first, second = slack_webhook.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0  # Retry-After was honoured
    assert second.text == "after a rate limit"


def test_server_errors_are_retried_by_slack_sdk(slack_webhook) -> None:
    slack_webhook.answer(500, "oops")
    slack_webhook.answer(503, "busy")
    slack.post(slack_webhook.url, "after two server errors")
    assert [r.status for r in slack_webhook.requests] == [500, 503, 200]


def test_persistent_server_errors_raise_without_the_url(slack_webhook) -> None:
    for _ in range(3):
        slack_webhook.answer(500, "still broken")
    with pytest.raises(slack.SlackError) as caught:
        slack.post(slack_webhook.url, "doomed", server_error_retries=2)
    assert len(slack_webhook.requests) == 3
    message = str(caught.value)
    assert "500" in message and "still broken" in message
    assert TOKEN not in message and "127.0.0.1" in message


def test_a_client_error_is_not_retried(slack_webhook) -> None:
    slack_webhook.answer(400, "invalid_payload")
    with pytest.raises(slack.SlackError, match="400: invalid_payload"):
        slack.post(slack_webhook.url, "bad")
    assert len(slack_webhook.requests) == 1


def test_an_unreachable_webhook_never_shows_its_url_in_logs_or_errors(caplog) -> None:
    url = f"http://127.0.0.1:{free_port()}{WEBHOOK_PATH}"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(slack.SlackError, match="unreachable") as caught:
        slack.post(url, "nobody listens", connection_retries=1)
    assert TOKEN not in str(caught.value)
    assert "Going to retry" in caplog.text  # slack_sdk did log its retry…
    assert TOKEN not in caplog.text  # …with the URL masked


def test_describe_keeps_only_scheme_and_host() -> None:
    assert slack.describe("https://hooks.slack.com/services/T/B/x") == "https://hooks.slack.com/…"
