"""Every setting of taskflow-jobs, read from the environment (and `.env`).

The names are the contract in ARCHITECTURE.md; a bad value fails with a message that
names the environment variable (see `load_settings`).
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskflow_jobs.errors import SettingsError

EMAIL_QUEUE = "email_notifications"

__all__ = [
    "EMAIL_QUEUE",
    "EmailProvider",
    "Settings",
    "SettingsError",
    "get_settings",
    "load_settings",
]


class EmailProvider(StrEnum):
    console = "console"
    smtp = "smtp"
    sendgrid = "sendgrid"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        # an empty variable means unset (children get SLACK_WEBHOOK_URL="" to turn it off)
        env_ignore_empty=True,
    )

    # --- storage -------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="PostgreSQL URL of the app database; unset = embedded server"
    )
    data_dir: Path = Field(
        Path(".data"),
        validation_alias="TASKFLOW_DATA_DIR",
        description="Embedded Postgres, Prefect home and the console outbox live here",
    )

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

    # --- Prefect as an observer of delivery ------------------------------------------
    prefect_call_timeout: float = Field(
        3.0,
        gt=0,
        le=60,
        validation_alias="TASKFLOW_PREFECT_TIMEOUT",
        description="Seconds one report to Prefect may take before `consume` counts Prefect "
        "as unreachable and keeps delivering without it",
    )
    blocks_wait: float = Field(
        60.0,
        ge=0,
        le=3600,
        validation_alias="TASKFLOW_BLOCKS_WAIT",
        description="Seconds a process retries reading a Prefect block it needs before it "
        "exits with an error naming the block (it never falls back to a default)",
    )
    settings_refresh: float = Field(
        60.0,
        ge=1,
        le=86400,
        validation_alias="TASKFLOW_SETTINGS_REFRESH",
        description="`consume` re-reads the Prefect blocks this often: a UI edit takes "
        "effect within this time, and while Prefect is down the last known values stay",
    )

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

    # --- local system (`taskflow-jobs up`) -------------------------------------------
    prefect_port: int = Field(4200, ge=1, le=65535, validation_alias="TASKFLOW_PREFECT_PORT")
    run_retention_days: float = Field(
        30.0,
        gt=1 / 24,
        validation_alias="TASKFLOW_RUN_RETENTION_DAYS",
        description="The Prefect server `up` starts deletes flow runs, their logs and "
        "artifacts this many days after they ended (Prefect needs more than one hour)",
    )
    event_retention_days: float = Field(
        7.0,
        ge=1 / 24,
        validation_alias="TASKFLOW_EVENT_RETENTION_DAYS",
        description="The Prefect server `up` starts keeps events this many days",
    )

    # --- cron jobs: daily stats, health check, cleanup ------------------------------
    stats_catchup_days: int = Field(
        7, ge=1, le=366, description="daily-stats fills every missing day of the last N days"
    )
    health_max_queue_depth: int = Field(
        1000, ge=0, description="Alert when a queue holds more live messages than this"
    )
    health_max_message_age: float = Field(
        900.0, gt=0, description="Alert when the oldest visible message waited longer (seconds)"
    )
    health_max_db_latency_ms: float = Field(
        500.0, gt=0, description="Alert when a database round trip takes longer (milliseconds)"
    )
    health_max_pause: float = Field(
        3600.0, gt=0, description="Alert (once) when a queue or type stays paused longer (seconds)"
    )
    pause_poll_interval: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Seconds between two reads of the Prefect variable that pauses the queue",
    )
    health_max_new_dead_letters: int = Field(
        0, ge=0, description="Alert when more messages were dead-lettered since the last check"
    )
    health_max_failed_runs: int = Field(
        0, ge=0, description="Alert when more of our flow runs failed or crashed since last check"
    )
    health_max_late_runs: int = Field(
        0, ge=0, description="Alert when more of our flow runs than this are late"
    )
    cleanup_audit_log_days: int = Field(90, ge=1, description="Keep audit_log rows this long")
    cleanup_archive_days: int = Field(30, ge=1, description="Keep acked queue messages this long")
    cleanup_dead_letter_days: int = Field(30, ge=1, description="Keep dead letters this long")
    cleanup_idempotency_key_days: int = Field(
        30, ge=1, description="Keep idempotency keys of finished messages this long"
    )
    cleanup_batch_size: int = Field(
        5000, ge=1, le=1_000_000, description="Rows per DELETE batch at first (then adapted)"
    )
    cleanup_batch_seconds: float = Field(
        0.25, gt=0, le=5, description="Target duration of one DELETE batch (its transaction)"
    )
    block_prefix: str = Field(
        "taskflow",
        pattern="^[a-z0-9][a-z0-9-]*$",
        validation_alias="TASKFLOW_BLOCK_PREFIX",
        description="Prefect block documents are named <prefix>-slack, <prefix>-email, ...",
    )

    # --- alerts: automations created by `taskflow-jobs deploy` / `up` --------------------
    alert_dead_letter_threshold: int = Field(
        5, ge=1, description="Slack alert when this many emails are dead-lettered within the window"
    )
    alert_dead_letter_window: float = Field(900.0, ge=60, description="Seconds")
    alert_heartbeat_timeout: float = Field(
        90.0,
        ge=45,
        description="Seconds without a heartbeat before a running flow run is marked Crashed "
        "(our flows send one every 30 s, all of them before the run ends)",
    )

    # --- logging -------------------------------------------------------------------
    log_format: str = Field("text", pattern="^(text|json)$", validation_alias="TASKFLOW_LOG_FORMAT")

    @field_validator("app_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("sendgrid_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

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
    def provider_timeout(self) -> float:
        """The longest one send may take with the configured provider."""
        if self.email_provider is EmailProvider.smtp:
            return self.smtp_timeout
        if self.email_provider is EmailProvider.sendgrid:
            return self.sendgrid_timeout
        return 0.0

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Settings:
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

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.app_timezone)


def _env_name(loc: tuple) -> str:
    field = str(loc[0]) if loc else "?"
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    return str(alias if isinstance(alias, str) else field).upper()


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


def load_settings(**overrides: object) -> Settings:
    """Read the settings; raise SettingsError naming every bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"{_env_name(err['loc'])}: {err['msg']}" if err["loc"] else _plain(err["msg"])
            for err in exc.errors()
        ]
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call `get_settings.cache_clear()`)."""
    return load_settings()
