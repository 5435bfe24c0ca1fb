"""deployments/grafana-dashboard.json is a dashboard whose queries use only metrics that
/metrics exports (checked statically: no Grafana or Prometheus runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from taskflow_jobs.email.outcomes import Action, Outcome
from taskflow_jobs.jobs.metrics import WEBHOOK_REQUESTS, exposition, record_outcomes

DASHBOARD = Path(__file__).parents[2] / "deployments" / "grafana-dashboard.json"


def exported_names() -> set[str]:
    record_outcomes([Outcome(1, "welcome_email", 1, Action.SENT, duration_ms=1.0)], "dashboard")
    WEBHOOK_REQUESTS.labels("/dashboard-test", "200").inc(0)
    row = {"queue": "q", "visible": 1, "in_flight": 0, "delayed": 0,
           "oldest_age_seconds": 1.0, "dead_letters": 0}  # fmt: skip
    text = exposition([row]).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_dashboard_queries_use_exported_metrics_and_cover_them() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\btaskflow_[a-z_]+", e)}
    exported = exported_names()
    assert used <= exported, used - exported
    families = {
        "taskflow_queue_depth",
        "taskflow_queue_oldest_age_seconds",
        "taskflow_dead_letters",
        "taskflow_emails_total",
        "taskflow_send_seconds_bucket",
        "taskflow_webhook_requests_total",
    }
    assert families <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for expr in exprs:  # balanced brackets: a typo shows here, not in Grafana
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
