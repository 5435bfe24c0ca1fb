"""The pause switch in the Prefect UI: a Prefect Variable mirrored into `jobs.pauses`.

The variable `<block prefix>-queue-pause` holds `{"<queue>": ["<type>", ...]}`: the
paused message types of each queue, `"*"` for the whole queue, `[]` for none. An operator
edits it on the Variables page; every `consume` process reads it every
PAUSE_POLL_INTERVAL seconds and, when it has changed, makes `jobs.pauses` say the same.
The claim only reads Postgres, so a pause holds while Prefect is unreachable.

CLI and UI are one switch, last writer wins: `taskflow-jobs queue pause|resume` writes
Postgres, then the variable, and records the variable's new version as applied. Each
version of the variable (its `updated` time) is applied once, so a resume made while
Prefect was down is not undone by the older variable when Prefect comes back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate

from taskflow_jobs import db
from taskflow_jobs.db import Connection
from taskflow_jobs.jobs import pauses
from taskflow_jobs.settings import Settings
from taskflow_jobs.sql import query

log = logging.getLogger(__name__)
PREFECT_TIMEOUT = 10.0


def variable_name(settings: Settings) -> str:
    return f"{settings.block_prefix}-queue-pause"


class BadSwitch(ValueError):
    """The variable does not hold {"queue": ["type", ...]}: nothing is changed."""


def parse_switch(value: Any) -> dict[str, list[str]]:
    """The variable's value, checked (pure)."""
    if not isinstance(value, dict):
        raise BadSwitch('expected {"<queue>": ["<type>" or "*", ...]}')
    state: dict[str, list[str]] = {}
    for queue, types in value.items():
        if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
            raise BadSwitch(f"{queue}: expected a list of message types ('*' = every type)")
        state[str(queue)] = sorted(set(types))
    return state


def current_state(conn: Connection) -> dict[str, list[str]]:
    """What `jobs.pauses` says, in the variable's shape (every queue listed)."""
    state: dict[str, list[str]] = {
        r["name"]: [] for r in conn.execute("SELECT name FROM jobs.queues ORDER BY name")
    }
    for p in pauses.pauses(conn):
        state.setdefault(p.queue, []).append(p.message_type)
    return state


async def _read(name: str) -> tuple[Any, dt.datetime] | None:
    async with get_client() as client:
        variable = await client.read_variable_by_name(name)
    if variable is None or variable.updated is None:
        return None
    return variable.value, variable.updated


async def _write(name: str, state: dict[str, list[str]]) -> dt.datetime:
    async with get_client() as client:
        if await client.read_variable_by_name(name) is None:
            await client.create_variable(VariableCreate(name=name, value=state))
        else:
            await client.update_variable(VariableUpdate(name=name, value=state))
        variable = await client.read_variable_by_name(name)
    assert variable is not None and variable.updated is not None
    return variable.updated


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, PREFECT_TIMEOUT))


def publish(url: str, name: str) -> None:
    """Write Postgres' pauses to the variable (the CLI, after a change). Raises if Prefect
    is unreachable; the pause holds in Postgres either way."""
    with db.connect(url) as conn:
        state = current_state(conn)
    updated = _run(_write(name, state))
    with db.transaction(url) as conn:
        conn.execute(query("pause_mirror_record"), {"name": name, "updated": updated})


def mirror_once(url: str, name: str) -> bool:
    """Apply the variable to `jobs.pauses` if it changed since last applied; True if applied.

    Raises when Prefect is unreachable (the caller logs it and tries again later)."""
    found = _run(_read(name))
    if found is None:
        return False
    value, updated = found
    with db.transaction(url) as conn:
        row = conn.execute(query("pause_mirror_applied"), {"name": name}).fetchone()
        if row is not None and row["variable_updated"] >= updated:
            return False
        try:
            state = parse_switch(value)
        except BadSwitch as exc:
            log.error("Prefect variable %s ignored, pauses unchanged: %s", name, exc)
        else:
            for queue, types in state.items():
                pauses.set_pauses(conn, queue, types, source=pauses.PREFECT)
            log.info("pauses from Prefect variable %s: %s", name, state)
        conn.execute(query("pause_mirror_record"), {"name": name, "updated": updated})
    return True


class SwitchMirror:
    """Polls the variable in a daemon thread while a consumer runs."""

    def __init__(self, url: str, name: str, interval: float) -> None:
        self.url = url
        self.name = name
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="pause-switch", daemon=True)
        self.failing = False

    def start(self) -> SwitchMirror:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                mirror_once(self.url, self.name)
                if self.failing:
                    log.info("Prefect variable %s readable again", self.name)
                self.failing = False
            except Exception as exc:  # Prefect or Postgres away: the pauses stay as they are
                if not self.failing:
                    log.warning(
                        "cannot read Prefect variable %s (%s); pauses in Postgres still hold",
                        self.name,
                        type(exc).__name__,
                    )
                self.failing = True
            self.stopped.wait(self.interval)
