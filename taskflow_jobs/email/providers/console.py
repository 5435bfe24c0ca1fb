"""The default provider for development: log each email and write it as an `.eml` file.

Files land in `<TASKFLOW_DATA_DIR>/outbox/` and open in any mail client. Each is written
to a temporary name and renamed, so a watcher never sees half a file.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

from taskflow_jobs.email.compose import OutgoingEmail
from taskflow_jobs.email.providers.base import ConcurrentSession, SendResult, concurrent_session
from taskflow_jobs.email.providers.limit import LaneLimit

log = logging.getLogger(__name__)


class ConsoleProvider:
    name = "console"

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self.limit = LaneLimit(4)

    def session(self) -> AbstractAsyncContextManager[ConcurrentSession]:
        return concurrent_session(self, self.limit)

    async def send_one(self, item: OutgoingEmail) -> SendResult:
        try:
            path = await asyncio.to_thread(self._write, item)
        except OSError as exc:
            # a full or read-only disk fails every email alike
            return SendResult.unavailable(f"cannot write to outbox {self.outbox}: {exc.strerror}")
        log.info(
            "email #%s (%s) to %s: %s -> %s",
            item.message_id,
            item.message_type,
            item.recipient,
            item.subject,
            path.name,
            extra={"message_id": item.message_id, "message_type": item.message_type},
        )
        return SendResult.accepted()

    def _write(self, item: OutgoingEmail) -> Path:
        self.outbox.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.outbox / f"{stamp}-{item.message_id}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(item.mime().as_bytes())
        os.replace(tmp, path)
        return path

    async def aclose(self) -> None:
        return None
