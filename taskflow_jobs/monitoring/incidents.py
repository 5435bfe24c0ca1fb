"""Alert once per incident: which problems are open, which are new, which have cleared.

Each problem has a stable key ("database_unreachable", "queue_depth:email_notifications",
...). A key that appears opens an incident (one alert); while it stays, nothing is
posted; when it disappears, one "resolved" message closes it.

The state lives in a Prefect Variable rather than in PostgreSQL: the health check must
remember its open incidents precisely when the database is down, and a flow run always
has the Prefect API (it is how the run exists at all).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from prefect.variables import Variable

log = logging.getLogger(__name__)

MAX_SUMMARY = 300  # a Prefect Variable holds at most 5,000 characters of JSON


@dataclass(frozen=True)
class Problem:
    key: str
    summary: str


@dataclass(frozen=True)
class Incident:
    key: str
    summary: str
    opened_at: dt.datetime


@dataclass
class HealthState:
    open: dict[str, Incident] = field(default_factory=dict)
    last_checked_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "last_checked_at": self.last_checked_at.isoformat() if self.last_checked_at else None,
            "open": {
                key: {"summary": i.summary[:MAX_SUMMARY], "opened_at": i.opened_at.isoformat()}
                for key, i in self.open.items()
            },
        }

    @classmethod
    def from_json(cls, value: Any) -> HealthState:
        """Parse a stored state; anything unreadable counts as 'no open incidents'."""
        if not isinstance(value, dict):
            return cls()
        try:
            checked = value.get("last_checked_at")
            return cls(
                open={
                    key: Incident(key, str(i["summary"]), dt.datetime.fromisoformat(i["opened_at"]))
                    for key, i in (value.get("open") or {}).items()
                },
                last_checked_at=dt.datetime.fromisoformat(checked) if checked else None,
            )
        except (KeyError, TypeError, ValueError):
            log.warning("stored health state is unreadable; starting with no open incidents")
            return cls()


@dataclass(frozen=True)
class Transition:
    opened: list[Incident]
    resolved: list[Incident]
    ongoing: list[Incident]

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.resolved)


def advance(
    state: HealthState, problems: list[Problem], now: dt.datetime
) -> tuple[HealthState, Transition]:
    """The next state and what changed: new keys open, missing keys resolve."""
    current = {p.key: p for p in problems}
    opened = [Incident(k, p.summary, now) for k, p in current.items() if k not in state.open]
    resolved = [i for k, i in state.open.items() if k not in current]
    ongoing = [
        Incident(k, current[k].summary, i.opened_at) for k, i in state.open.items() if k in current
    ]
    new_state = HealthState(open={i.key: i for i in [*ongoing, *opened]}, last_checked_at=now)
    return new_state, Transition(opened, resolved, ongoing)


def _ago(since: dt.datetime, now: dt.datetime) -> str:
    minutes = int((now - since).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def alert_text(transition: Transition, now: dt.datetime, where: str = "taskflow-jobs") -> str:
    lines = [f":rotating_light: *{where} health check: {len(transition.opened)} new problem(s)*"]
    lines += [f"• {i.summary}" for i in transition.opened]
    if transition.ongoing:
        lines.append("Still open: " + "; ".join(i.summary for i in transition.ongoing))
    return "\n".join(lines)


def resolved_text(transition: Transition, now: dt.datetime, where: str = "taskflow-jobs") -> str:
    lines = [f":white_check_mark: *{where} health check: resolved*"]
    lines += [f"• {i.summary} (open for {_ago(i.opened_at, now)})" for i in transition.resolved]
    if transition.ongoing or transition.opened:
        lines.append(f"{len(transition.ongoing) + len(transition.opened)} problem(s) still open.")
    return "\n".join(lines)


class VariableStore:
    """The health state in a Prefect Variable (JSON), named `<block prefix>-health-state`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self) -> HealthState:

        try:
            return HealthState.from_json(Variable.get(self.name, default=None))
        except Exception as exc:  # the API hiccuped: alert as if nothing was open
            log.warning("could not read Prefect variable %s: %s", self.name, exc)
            return HealthState()

    def save(self, state: HealthState) -> None:

        Variable.set(self.name, state.to_json(), overwrite=True)
