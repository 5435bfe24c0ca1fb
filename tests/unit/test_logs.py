"""TASKFLOW_LOG_FORMAT=json: one JSON object per line with the job's context."""

from __future__ import annotations

import io
import json
import logging

import pytest

from taskflow_jobs.email.outcomes import Action, Outcome, log_outcomes
from taskflow_jobs.logs import configure_logging
from taskflow_jobs.settings import load_settings


@pytest.fixture(autouse=True)
def restore_logging():  # noqa: ANN201
    root = logging.getLogger("taskflow_jobs")
    saved = root.handlers[:], root.propagate, root.level
    yield
    root.handlers[:] = saved[0]
    root.propagate, root.level = saved[1], saved[2]


@pytest.fixture
def json_lines(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.setenv("TASKFLOW_LOG_FORMAT", "json")
    configure_logging(load_settings(), verbose=True)
    root = logging.getLogger("taskflow_jobs")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)
    return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]


def test_dispatch_outcomes_log_id_type_attempt_and_duration(json_lines) -> None:  # noqa: ANN001
    log_outcomes(
        [
            Outcome(7, "welcome_email", 2, Action.RETRIED, "SendGrid 500", 4.0, 31.5),
            Outcome(8, "task_assigned", 5, Action.DEAD_LETTERED, "attempts exhausted", None, 12.0),
            Outcome(9, "notification", 1, Action.SENT, None, None, 8.25),
        ]
    )
    lines = json_lines()
    assert [line["message_id"] for line in lines] == [7, 8, 9]
    retried, dead, sent = lines
    assert retried["level"] == "info" and retried["message_type"] == "welcome_email"
    assert (retried["attempt"], retried["duration_ms"]) == (2, 31.5)
    assert "retries in 4.0s: SendGrid 500" in retried["msg"]
    assert dead["level"] == "warning" and dead["attempt"] == 5
    assert sent["level"] == "debug" and sent["duration_ms"] == 8.25
    assert all(
        line["logger"] == "taskflow_jobs.email.worker.batch" and "ts" in line for line in lines
    )


def test_text_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFLOW_LOG_FORMAT", raising=False)
    configure_logging(load_settings())
    handler = logging.getLogger("taskflow_jobs").handlers[0]
    record = logging.LogRecord("taskflow_jobs.x", logging.INFO, __file__, 1, "hello", None, None)
    assert not handler.format(record).startswith("{")
