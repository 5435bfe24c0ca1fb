"""Settings of email delivery: the provider, the queue and retries, dispatch."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings


class EmailProvider(StrEnum):
    console = "console"
    smtp = "smtp"
    sendgrid = "sendgrid"


class DeliverySettings(BaseSettings):
    # --- email ---------------------------------------------------------------------
    email_provider: EmailProvider = EmailProvider.console
    email_from: str = "TaskFlow <noreply@example.com>"
    smtp_host: str = "localhost"
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout: float = Field(30.0, gt=0, validation_alias="SMTP_TIMEOUT")
    sendgrid_api_key: SecretStr | None = None
    sendgrid_api_url: str = "https://api.sendgrid.com"
    sendgrid_concurrency: int = Field(8, ge=1, le=256)
    sendgrid_timeout: float = Field(30.0, gt=0)
    # one limit per provider, shared by every consumer on every machine (jobs.rate_limits)
    sendgrid_rate_limit: float | None = Field(
        None,
        gt=0,
        description="Emails per second to SendGrid, all consumers together; unset = no limit",
    )
    smtp_rate_limit: float | None = Field(
        None, gt=0, description="Emails per second to the SMTP server, all consumers together"
    )

    # --- queue and retries ---------------------------------------------------------
    email_max_attempts: int = Field(5, ge=1, le=100)
    # each Prefect task run costs ~30 ms of server CPU, so batches are large; see bench/dispatch.py
    email_batch_size: int = Field(500, ge=1, le=10_000)
    email_visibility_timeout: float = Field(
        120.0, gt=0, description="Seconds a claimed batch stays invisible to other consumers"
    )
    email_settle_every: int = Field(
        50, ge=1, le=10_000, description="Settle (ack, retry, dead-letter) every N outcomes"
    )
    # 0 = group commit: a batch settles as soon as its previous settle has committed, so
    # a storm's outcomes group by themselves; the fault soak measured 0.05 s against 0
    email_settle_interval: float = Field(
        0.0,
        ge=0,
        le=30,
        description="... and at most once this many seconds (0: as soon as the previous "
        "settle has committed); an outcome after a quiet spell is settled at once",
    )
    email_settle_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Tries of a failing settle, at least (more while the lease lasts)",
    )
    email_settle_margin: float = Field(
        5.0,
        ge=0,
        description="Seconds kept at the end of a lease for the last settle: no send starts "
        "later than the provider timeout plus this before the lease ends",
    )
    email_backoff_base: float = Field(10.0, gt=0, description="Seconds before the first retry")
    email_backoff_cap: float = Field(3600.0, gt=0, description="Longest delay between retries")
    email_time_budget: float = Field(
        50.0, gt=0, description="Seconds one email-dispatch run drains before it stops"
    )

    # --- email dispatch: concurrency, the low-latency consumer ---------------------
    email_concurrency: int = Field(
        4, ge=1, le=64, description="Batches one dispatcher processes at the same time"
    )
    email_batch_window: float = Field(
        1.0,
        ge=0,
        le=60,
        description="In `consume`, seconds one batch (one Prefect task run) keeps taking "
        "newly arrived messages before it closes; bounds task runs under a trickle",
    )
    email_express_batch: int = Field(
        50,
        ge=0,
        le=10_000,
        description="In `consume`, most transactional messages the express lane claims at "
        "once (they never wait for a bulk batch in flight); 0 = no express lane",
    )
    email_express_concurrency: int = Field(
        4, ge=1, le=256, description="Requests the express lane may have in flight at once"
    )
    email_poll_interval: float = Field(
        5.0, gt=0, le=3600, description="Longest sleep of `consume` without a NOTIFY"
    )
    email_idle_timeout: float = Field(
        30.0, ge=0, description="`consume` ends its flow run after this long without work"
    )
    email_consume_budget: float = Field(
        600.0, gt=0, description="Longest `consume` flow run; the next one starts at once"
    )
    email_sweep_after: float = Field(
        60.0,
        ge=5,
        le=3600,
        description="Email claimable this long without being sent is overdue: the webhook "
        "receiver then asks for an email-dispatch sweep (none is made while `consume` runs)",
    )
    email_sweep_interval: float = Field(
        30.0, gt=0, le=3600, description="How often the webhook receiver looks for overdue email"
    )
    email_shutdown_grace: float = Field(
        10.0, ge=0, description="On SIGTERM, seconds to finish sends in flight before releasing"
    )
    email_task_retries: int = Field(
        3, ge=0, le=20, description="Prefect retries of a batch on infrastructure errors"
    )
    email_task_retry_delay: float = Field(
        2.0, ge=0, description="First Prefect retry delay of a batch (doubles, jittered)"
    )

    @field_validator("sendgrid_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def provider_timeout(self) -> float:
        """The longest one send may take with the configured provider."""
        if self.email_provider is EmailProvider.smtp:
            return self.smtp_timeout
        if self.email_provider is EmailProvider.sendgrid:
            return self.sendgrid_timeout
        return 0.0

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> DeliverySettings:
        """A lease shorter than the slowest send plus its settle would let another consumer
        claim (and send again) what is still being sent."""
        needed = self.provider_timeout + self.email_settle_margin
        if self.email_visibility_timeout <= needed:
            timeout = (
                "SMTP_TIMEOUT" if self.email_provider is EmailProvider.smtp else "SENDGRID_TIMEOUT"
            )
            raise ValueError(
                f"EMAIL_VISIBILITY_TIMEOUT ({self.email_visibility_timeout:g}s) must exceed "
                f"{timeout} ({self.provider_timeout:g}s) + EMAIL_SETTLE_MARGIN "
                f"({self.email_settle_margin:g}s)"
            )
        return self
