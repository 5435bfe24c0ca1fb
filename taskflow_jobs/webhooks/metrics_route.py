"""`GET /metrics` of the receiver: its request counters and the queue gauges, read from the
database through the receiver's own pool at each scrape (see taskflow_jobs/jobs/metrics.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from psycopg_pool import AsyncConnectionPool

from taskflow_jobs.jobs.metrics import authorized, exposition
from taskflow_jobs.sql import query
from taskflow_jobs.webhooks.errors import ApiError

log = logging.getLogger("taskflow_jobs.webhooks")
metrics_router = APIRouter()
SCRAPE_TIMEOUT = 5.0


async def queue_rows(pool: AsyncConnectionPool) -> list[dict[str, Any]] | None:
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT), pool.connection() as conn:
            cursor = await conn.execute(query("metrics_queues"))
            return await cursor.fetchall()  # type: ignore[return-value]
    except Exception as exc:  # the scrape answers, with taskflow_queue_metrics_up 0
        log.warning("queue metrics unavailable: %s", type(exc).__name__)
        return None


@metrics_router.get("/metrics")
async def metrics(request: Request) -> Response:
    if not authorized(request.headers.get("authorization"), request.app.state.metrics_token):
        raise ApiError(401, "unauthorized")
    rows = await queue_rows(request.app.state.receiver.pool)
    return Response(exposition(rows), media_type=CONTENT_TYPE_LATEST)
