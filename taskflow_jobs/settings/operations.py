"""Settings of operations: Prefect as an observer, the local system, cron jobs, alerts."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class OperationsSettings(BaseSettings):
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
