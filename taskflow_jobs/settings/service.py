"""Settings of what TaskFlow and recipients reach: the receiver, reports, metrics, consent."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings


class ServiceSettings(BaseSettings):
    # --- slack / reports -----------------------------------------------------------
    slack_webhook_url: SecretStr | None = None
    app_timezone: str = "UTC"

    # --- webhook receiver ----------------------------------------------------------
    webhook_secret: SecretStr | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = Field(8787, ge=1, le=65535)
    # rotation, database pool and event coalescing
    webhook_secret_previous: SecretStr | None = Field(
        None, description="Also accepted while senders move to a new WEBHOOK_SECRET"
    )
    webhook_db_pool_size: int = Field(
        10, ge=1, le=200, description="Database connections the receiver may hold"
    )
    webhook_event_interval: float = Field(
        2.0,
        ge=0,
        le=300,
        description="Seconds between taskflow.email.enqueued events (a burst becomes one event)",
    )

    # --- Prometheus metrics (/metrics of the receiver and of each `consume`) -----------
    consume_metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of `consume`'s /metrics (0 = any free port); unset = no endpoint",
    )
    consume_metrics_host: str = Field(
        "127.0.0.1", description="Address of `consume`'s /metrics (0.0.0.0 in a container)"
    )
    metrics_token: SecretStr | None = Field(
        None, description="If set, /metrics needs `Authorization: Bearer <token>`"
    )

    # --- recipients' consent: unsubscribe links, SendGrid's Event Webhook ----------
    unsubscribe_secret: SecretStr | None = Field(
        None, description="HMAC key of unsubscribe tokens; unset = derived from WEBHOOK_SECRET"
    )
    public_base_url: str | None = Field(
        None, description="Where recipients reach the receiver; unset = the receiver's own URL"
    )
    unsubscribe_mailto: str | None = Field(
        None, description="Address for the mailto: form of List-Unsubscribe (optional)"
    )
    sendgrid_webhook_public_key: str | None = Field(
        None, description="Verification key of SendGrid's Signed Event Webhook (base64 or PEM)"
    )
    sendgrid_webhook_max_age: float = Field(
        300.0, gt=0, le=86_400, description="Seconds a signed event batch stays acceptable"
    )

    @field_validator("app_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @property
    def receiver_base_url(self) -> str:
        """PUBLIC_BASE_URL, or the receiver's own address (WEBHOOK_HOST:WEBHOOK_PORT)."""
        if self.public_base_url:
            return self.public_base_url
        host = "127.0.0.1" if self.webhook_host in ("0.0.0.0", "::", "") else self.webhook_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.webhook_port}"

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.app_timezone)
