"""What `--help` says about each command beyond its docstring: a one-line summary for the
command list, and the settings (environment variables) that matter for it."""

from __future__ import annotations

DATABASE = "DATABASE_URL (unset: the embedded PostgreSQL under TASKFLOW_DATA_DIR)"
PREFECT = "PREFECT_API_URL (unset: the server `up` runs on TASKFLOW_PREFECT_PORT)"
EMAIL = (
    "EMAIL_PROVIDER, EMAIL_FROM (or the taskflow-email block, like the lines below)\n"
    "  SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_STARTTLS, SMTP_TIMEOUT\n"
    "  SENDGRID_API_KEY, SENDGRID_API_URL, SENDGRID_TIMEOUT"
)

SUMMARY: dict[str, str] = {
    "migrate": "Apply the pending database migrations.",
    "schema": "Print the schema the migrations produce.",
    "enqueue": "Enqueue one job by hand.",
    "psql": "Open psql on the app database.",
    "deploy": "Create the pool, blocks, deployments and automations.",
    "consume": "Send emails as they are enqueued, until stopped.",
    "dispatch": "Send what is queued now, then exit.",
    "status": "Show queues, dead letters and deployments.",
    "runs": "List recent flow runs.",
    "up": "Start the whole system until Ctrl-C.",
    "demo": "Run the whole path once and print a summary.",
    "webhooks": "Receive signed webhooks until stopped.",
}

SETTINGS: dict[str, list[str]] = {
    "migrate": [DATABASE],
    "schema": ["TASKFLOW_DATA_DIR (where the scratch database runs)"],
    "enqueue": [DATABASE],
    "psql": [DATABASE],
    "deploy": [
        PREFECT,
        DATABASE,
        EMAIL,
        "SLACK_WEBHOOK_URL (reports and alerts)",
        "TASKFLOW_BLOCK_PREFIX (block names, default taskflow)",
        "ALERT_DEAD_LETTER_THRESHOLD, ALERT_DEAD_LETTER_WINDOW, ALERT_HEARTBEAT_TIMEOUT",
    ],
    "consume": [
        DATABASE,
        PREFECT,
        EMAIL,
        "EMAIL_BATCH_SIZE, EMAIL_CONCURRENCY, EMAIL_BATCH_WINDOW, EMAIL_POLL_INTERVAL",
        "EMAIL_VISIBILITY_TIMEOUT, EMAIL_MAX_ATTEMPTS, EMAIL_BACKOFF_BASE, EMAIL_BACKOFF_CAP",
        "EMAIL_IDLE_TIMEOUT, EMAIL_CONSUME_BUDGET, EMAIL_SHUTDOWN_GRACE, EMAIL_EXPRESS_BATCH",
        "SENDGRID_RATE_LIMIT, SMTP_RATE_LIMIT (per second, all consumers together)",
        "PAUSE_POLL_INTERVAL (reading the pause switch in Prefect)",
    ],
    "dispatch": [DATABASE, PREFECT, EMAIL, "EMAIL_TIME_BUDGET, EMAIL_CONCURRENCY"],
    "status": [DATABASE, PREFECT],
    "runs": [PREFECT],
    "up": [
        "TASKFLOW_DATA_DIR (embedded PostgreSQL, Prefect home, logs, outbox)",
        "TASKFLOW_PREFECT_PORT, WEBHOOK_HOST, WEBHOOK_PORT, WEBHOOK_SECRET",
        "TASKFLOW_RUN_RETENTION_DAYS, TASKFLOW_EVENT_RETENTION_DAYS",
        DATABASE,
        EMAIL,
        "SLACK_WEBHOOK_URL",
    ],
    "demo": [DATABASE, "EMAIL_PROVIDER (console unless set)"],
    "webhooks": [
        "WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS, WEBHOOK_HOST, WEBHOOK_PORT",
        DATABASE,
        PREFECT,
        "WEBHOOK_DB_POOL_SIZE, WEBHOOK_EVENT_INTERVAL, EMAIL_SWEEP_AFTER, EMAIL_SWEEP_INTERVAL",
    ],
}


def epilog(name: str) -> str | None:
    """The settings paragraph of command `name` (kept as lines by click's \\b marker)."""
    lines = SETTINGS.get(name)
    if not lines:
        return None
    return "\b\nSettings that matter here:\n" + "\n".join(f"  {line}" for line in lines)
