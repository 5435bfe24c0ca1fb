"""Logging: human-readable by default, one JSON object per line with TASKFLOW_LOG_FORMAT=json.

Our loggers pass job context as `extra={"message_id": …, "message_type": …, "attempt": …,
"duration_ms": …}`; the JSON formatter puts those fields at the top level.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from taskflow_jobs.settings import Settings

CONTEXT_FIELDS = ("message_id", "message_type", "attempt", "duration_ms", "queue", "flow_run")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings, *, verbose: bool = False) -> None:
    """Configure the `taskflow_jobs` logger tree (Prefect configures its own loggers)."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("taskflow_jobs")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
