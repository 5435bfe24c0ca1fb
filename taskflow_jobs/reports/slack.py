"""Posting to a Slack incoming webhook with slack_sdk.

slack_sdk's `WebhookClient` retries by itself with its built-in handlers: 429 (waits for
`Retry-After`), 500/503, and connection errors. What is still failing after that raises
`SlackError`, so the Prefect task around `post` (flows/common.py) retries it with
exponential backoff.

The webhook URL is a secret: it is kept in a `SecretStr`, and slack_sdk's own logger
(which prints the URL when it retries) goes through a filter that masks it.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

log = logging.getLogger(__name__)

MAX_TEXT = 39_000  # Slack truncates messages at 40,000 characters


class SlackError(RuntimeError):
    """Slack did not accept the message; the text never contains the webhook URL."""


def describe(url: str) -> str:
    """Where a webhook points, without its secret path: 'https://hooks.slack.com/…'."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}/…"


class _MaskUrl(logging.Filter):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.url in message:
            record.msg, record.args = message.replace(self.url, describe(self.url)), None
        return True


def _sdk_logger(url: str) -> logging.Logger:
    logger = logging.getLogger("taskflow_jobs.reports.slack.sdk")
    logger.filters[:] = [_MaskUrl(url)]
    return logger


def client(
    url: SecretStr | str,
    *,
    timeout: int = 15,
    rate_limit_retries: int = 3,
    server_error_retries: int = 2,
    connection_retries: int = 2,
) -> WebhookClient:
    secret = url.get_secret_value() if isinstance(url, SecretStr) else url
    return WebhookClient(
        secret,
        timeout=timeout,
        logger=_sdk_logger(secret),
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
            ServerErrorRetryHandler(max_retry_count=server_error_retries),
            ConnectionErrorRetryHandler(max_retry_count=connection_retries),
        ],
    )


def post(
    url: SecretStr | str,
    text: str,
    *,
    blocks: list[dict[str, Any]] | None = None,
    **client_options: Any,
) -> None:
    """Send one message; raise SlackError unless Slack answers 200."""
    secret = url.get_secret_value() if isinstance(url, SecretStr) else url
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 20] + "\n… (truncated)"
    webhook = client(secret, **client_options)
    try:
        response = webhook.send(text=text, blocks=blocks)
    except Exception as exc:  # urllib errors: the URL is not in their message, the host is
        reason = str(exc).replace(secret, describe(secret))
        raise SlackError(f"Slack webhook {describe(secret)} unreachable: {reason}") from None
    if response.status_code != 200:
        body = (response.body or "").strip()[:200].replace(secret, describe(secret))
        raise SlackError(
            f"Slack webhook {describe(secret)} answered {response.status_code}: {body or '(empty)'}"
        )
    log.info("posted %d characters to Slack webhook %s", len(text), describe(secret))
