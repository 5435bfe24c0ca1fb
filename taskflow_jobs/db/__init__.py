"""The database: connections, the migrations runner, the embedded server, the schema dump."""

from taskflow_jobs.db.connect import (
    Connection,
    check_idle,
    connect,
    has_input,
    redact_reason,
    redact_url,
    transaction,
)
from taskflow_jobs.db.embedded import (
    APP_DATABASE,
    PREFECT_DATABASE,
    EmbeddedPostgres,
    database_url,
    embedded_server,
    ensure_database,
    start_embedded,
    stop_cluster,
)
from taskflow_jobs.db.migrate import Migration, MigrationChanged, discover_migrations, migrate
from taskflow_jobs.errors import DatabaseUnavailable

__all__ = [
    "APP_DATABASE",
    "Connection",
    "PREFECT_DATABASE",
    "DatabaseUnavailable",
    "EmbeddedPostgres",
    "Migration",
    "MigrationChanged",
    "check_idle",
    "has_input",
    "connect",
    "database_url",
    "discover_migrations",
    "embedded_server",
    "ensure_database",
    "migrate",
    "redact_reason",
    "redact_url",
    "start_embedded",
    "stop_cluster",
    "transaction",
]
