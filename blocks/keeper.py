"""Settings kept in memory and refreshed from the blocks in the background.

A long-running process (`consume`) reads its settings once at start, failing closed
(`settings_from_blocks`); afterwards a Prefect outage must not stop it nor change what
it does. So a thread re-reads them every TASKFLOW_SETTINGS_REFRESH seconds: an edit in
the UI takes effect within that time, and a read that fails keeps the last known values
(one warning per outage, one info line when reading works again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from taskflow_jobs.settings import Settings

log = logging.getLogger(__name__)


class SettingsKeeper:
    def __init__(self, read: Callable[[], Settings], first: Settings) -> None:
        self._read = read
        self.current = first
        self.interval = first.settings_refresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> SettingsKeeper:
        self._thread = threading.Thread(target=self._loop, name="settings-refresh", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> Settings:
        """Read once; on failure keep (and return) the last known settings."""
        try:
            new = self._read()
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "cannot refresh settings (%s); keeping the last known ones",
                    f"{type(exc).__name__}: {exc}"[:300],
                )
            self._failing = True
            return self.current
        if self._failing:
            log.info("settings readable again")
            self._failing = False
        if new != self.current:
            old = self.current.model_dump()
            changed = sorted(k for k, v in new.model_dump().items() if old.get(k) != v)
            log.info("settings changed: %s", ", ".join(changed))  # names only, never values
            self.current = new
        return self.current

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()
