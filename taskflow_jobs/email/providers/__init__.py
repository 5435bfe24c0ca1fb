"""Email providers behind one interface (`base.Provider`): smtp, sendgrid, console."""

from __future__ import annotations

from taskflow_jobs.email.providers.base import (
    NOT_SENT,
    Provider,
    ProviderSession,
    ProviderUnavailable,
    SendControl,
    SendResult,
    SendStatus,
)
from taskflow_jobs.email.providers.console import ConsoleProvider
from taskflow_jobs.email.providers.sendgrid import SendGridProvider
from taskflow_jobs.email.providers.smtp import SmtpProvider
from taskflow_jobs.jobs.ratelimit import UNLIMITED, ProviderThrottle
from taskflow_jobs.settings import EmailProvider, Settings, SettingsError

__all__ = [
    "NOT_SENT",
    "Provider",
    "ProviderSession",
    "ProviderUnavailable",
    "SendControl",
    "SendResult",
    "SendStatus",
    "create_provider",
]


def create_provider(settings: Settings, database_url: str | None = None) -> Provider:
    """The provider EMAIL_PROVIDER names; SettingsError names a missing setting.

    With `database_url`, the provider's rate limit (SENDGRID_RATE_LIMIT, SMTP_RATE_LIMIT) and
    its backoff after a 429 are shared with every consumer through that database.
    """
    if settings.email_provider is EmailProvider.smtp:
        return SmtpProvider(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
            throttle=_throttle("smtp", settings.smtp_rate_limit, database_url),
        )
    if settings.email_provider is EmailProvider.sendgrid:
        if settings.sendgrid_api_key is None or not settings.sendgrid_api_key.get_secret_value():
            raise SettingsError("SENDGRID_API_KEY: required when EMAIL_PROVIDER=sendgrid")
        return SendGridProvider(
            settings.sendgrid_api_url,
            settings.sendgrid_api_key.get_secret_value(),
            concurrency=settings.sendgrid_concurrency,
            timeout=settings.sendgrid_timeout,
            throttle=_throttle("sendgrid", settings.sendgrid_rate_limit, database_url),
        )

    return ConsoleProvider(settings.data_dir / "outbox")


def _throttle(name: str, rate: float | None, database_url: str | None) -> ProviderThrottle:
    return UNLIMITED if database_url is None else ProviderThrottle(name, rate, database_url)
