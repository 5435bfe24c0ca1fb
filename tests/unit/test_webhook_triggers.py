"""The deployment triggers in prefect.yaml are valid Prefect and render the date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.cli.deploy._triggers import DeploymentTriggerAdapter
from prefect.server.events.actions import RunDeployment
from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

from taskflow_jobs.webhooks.payloads import event_payload

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def triggers_of(deployment: str) -> list[dict[str, Any]]:
    project = yaml.safe_load(PREFECT_YAML.read_text())
    [spec] = [d for d in project["deployments"] if d["name"] == deployment]
    return spec.get("triggers", [])


def render(parameters: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """What Prefect's RunDeployment action does with the parameters (server code)."""
    params = dict(parameters)
    RunDeployment._upgrade_v1_templates(params)
    context = HydrationContext(
        raise_on_error=True,
        render_jinja=True,
        jinja_context={"event": {"payload": payload}},
        render_workspace_variables=False,
    )
    return hydrate(params, context)


def test_every_trigger_is_a_valid_prefect_deployment_trigger() -> None:
    names = []
    for deployment in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]:
        for spec in deployment.get("triggers", []):
            trigger = DeploymentTriggerAdapter.validate_python(dict(spec))
            names.append((deployment["name"], sorted(trigger.expect)))
    assert names == [
        ("email-dispatch", ["taskflow.email.overdue"]),
        ("daily-stats", ["taskflow.report.requested"]),
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [({"date": "2024-05-01"}, "2024-05-01"), ({}, None), ({"date": None}, None)],
)
def test_daily_stats_gets_the_date_from_the_receivers_payload(
    body: dict[str, Any], expected: str | None
) -> None:
    [trigger] = triggers_of("daily-stats")
    payload = event_payload("report.requested", body)  # what the receiver emits
    assert render(trigger["parameters"], payload) == {"date": expected}


def test_an_event_without_a_date_key_still_renders() -> None:
    """`prefect event emit taskflow.report.requested` with no payload at all."""
    [trigger] = triggers_of("daily-stats")
    assert render(trigger["parameters"], {}) == {"date": None}
