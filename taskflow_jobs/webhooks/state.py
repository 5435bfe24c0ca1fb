"""What the routes share: credentials check, database pool, Prefect events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from taskflow_jobs.webhooks import store
from taskflow_jobs.webhooks.auth import Authenticator
from taskflow_jobs.webhooks.events import EnqueuedEvents, PrefectEvents
from taskflow_jobs.webhooks.inputs import MAX_BODY_BYTES

HEALTH_TIMEOUT = 2.0


@dataclass
class Receiver:
    auth: Authenticator
    pool: AsyncConnectionPool
    events: PrefectEvents | None
    enqueued: EnqueuedEvents
    max_body: int = MAX_BODY_BYTES

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One pooled connection, one transaction: committed when the block ends normally."""
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def database_status(self) -> str:
        try:
            async with self.pool.connection(timeout=HEALTH_TIMEOUT) as conn:
                return "ok" if await store.ready(conn) else "not migrated"  # type: ignore[arg-type]
        except psycopg.Error:  # PoolTimeout is one
            return "unreachable"

    async def prefect_status(self) -> str:
        if self.events is None:
            return "not configured"
        return "ok" if await self.events.healthy() else "unreachable"
