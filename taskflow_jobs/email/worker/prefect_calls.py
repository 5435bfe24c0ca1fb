"""The observer's requests to Prefect: runs, artifacts, states, events.

Each is one request of at most `call_timeout` (the observer's client has no retries):
the observer's circuit breaker, not the client, decides when to try again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

from prefect.client.schemas.actions import ArtifactCreate
from prefect.states import Completed, Failed, Running, State

FLOW_NAME = "email-dispatch"
DEAD_LETTERED = "DeadLettered"  # final state name of a run that dead-lettered emails
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"


class PrefectCalls:
    _client: Any
    label: str

    def _create_run(self, name: str, started: datetime) -> Any:
        flow = SimpleNamespace(name=FLOW_NAME, version=None, retries=0, retry_delay_seconds=0)
        return self._client.create_flow_run(
            flow,
            name=name,
            parameters={"mode": "listen", "consumer": self.label},
            tags=["consume"],
            state=Running(timestamp=started),
        )

    def _artifact(self, run_id: UUID, key: str, table: list[dict], description: str) -> None:
        self._client.create_artifact(
            ArtifactCreate(
                key=key,
                type="table",
                data=json.dumps(table, default=str),
                description=description,
                flow_run_id=run_id,
            )
        )

    def _finish(
        self,
        run_id: UUID,
        description: str,
        dead: int,
        error: str | None,
        summary: dict[str, Any],
    ) -> None:
        state: State[Any]
        if error is not None:
            state = Failed(message=f"{error} ({description})")
        elif dead:
            state = Failed(
                name=DEAD_LETTERED,
                message=f"{dead} email(s) dead-lettered; see this run's artifact and "
                "`taskflow-jobs dlq list`",
            )
        else:
            state = Completed(message=description)
        self._client.set_flow_run_state(run_id, state, force=True)

    def _heartbeat(self, run_id: UUID | None, flow_id: UUID | None, name: str) -> None:
        """A heartbeat of the run, so the automation can tell a silent run from a live one."""
        self._post_events(
            [
                {
                    "occurred": datetime.now(UTC).isoformat(),
                    "event": HEARTBEAT_EVENT,
                    "resource": {
                        "prefect.resource.id": f"prefect.flow-run.{run_id}",
                        "prefect.resource.name": name,
                    },
                    "related": [
                        {
                            "prefect.resource.id": f"prefect.flow.{flow_id}",
                            "prefect.resource.role": "flow",
                            "prefect.resource.name": FLOW_NAME,
                        }
                    ],
                    "payload": {},
                    "id": str(uuid4()),
                }
            ]
        )

    def _post_events(self, events: list[dict[str, Any]]) -> None:
        response = self._client.request("POST", "/events", json=events)
        response.raise_for_status()
