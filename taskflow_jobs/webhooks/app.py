"""The FastAPI app of the webhook receiver (`taskflow-jobs webhooks`).

`create_app(settings, pool)` builds it; its lifespan opens the pool, starts the coalesced
`taskflow.email.enqueued` announcer and the receipt-expiry chore, and on shutdown
announces what is pending and closes everything.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from taskflow_jobs.jobs.metrics import WebhookMetrics
from taskflow_jobs.settings import EMAIL_QUEUE, Settings
from taskflow_jobs.webhooks import chores
from taskflow_jobs.webhooks.auth import Authenticator
from taskflow_jobs.webhooks.consent_routes import ConsentConfig
from taskflow_jobs.webhooks.consent_routes import router as consent_router
from taskflow_jobs.webhooks.errors import RequestContext, install_error_handlers
from taskflow_jobs.webhooks.events import EnqueuedEvents, PrefectEvents
from taskflow_jobs.webhooks.inputs import MAX_BODY_BYTES
from taskflow_jobs.webhooks.metrics_route import metrics_router
from taskflow_jobs.webhooks.routes import router
from taskflow_jobs.webhooks.state import Receiver

log = logging.getLogger("taskflow_jobs.webhooks")


def secrets_of(settings: Settings) -> list[str]:
    return [
        s.get_secret_value()
        for s in (settings.webhook_secret, settings.webhook_secret_previous)
        if s is not None and s.get_secret_value()
    ]


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() or None if secret is not None else None


def create_app(
    settings: Settings,
    pool: AsyncConnectionPool,
    *,
    prefect_api_url: str | None = None,
    insecure_dev: bool = False,
    max_body: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The receiver. Without a secret in `settings` it refuses to exist unless `insecure_dev`.

    `prefect_api_url` None disables events: `/api/events/*` answers 503 and no
    `taskflow.email.enqueued` is sent (the email-dispatch sweep still sends every job).
    """
    auth = Authenticator(secrets_of(settings), insecure_dev=insecure_dev)
    events = PrefectEvents(prefect_api_url) if prefect_api_url else None
    rx = Receiver(
        auth=auth,
        pool=pool,
        events=events,
        enqueued=EnqueuedEvents(events, settings.webhook_event_interval, EMAIL_QUEUE),
        max_body=max_body,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)
        rx.enqueued.start()
        background = chores.start(pool, events, settings)
        try:
            yield
        finally:
            await chores.stop(background)
            await rx.enqueued.aclose()
            if events is not None:
                await events.aclose()
            await pool.close()

    app = FastAPI(
        title="taskflow-jobs webhooks",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.receiver = rx
    app.state.consent = ConsentConfig.from_settings(settings)
    app.router.redirect_slashes = False  # a 307 with an empty body helps no webhook sender
    app.include_router(router)
    app.include_router(metrics_router)
    app.state.metrics_token = secret_value(settings.metrics_token)
    app.include_router(consent_router)
    install_error_handlers(app)
    app.add_middleware(RequestContext)
    app.add_middleware(WebhookMetrics)
    return app
