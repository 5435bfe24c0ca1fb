"""`taskflow-jobs webhooks`: checks that fail early with a clear message, then uvicorn."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
from collections.abc import Iterator

import uvicorn

from taskflow_jobs import db, net
from taskflow_jobs.settings import Settings
from taskflow_jobs.sql import query
from taskflow_jobs.webhooks import store
from taskflow_jobs.webhooks.app import create_app, secrets_of
from taskflow_jobs.webhooks.auth import check_secret
from taskflow_jobs.webhooks.events import configured_api_url

log = logging.getLogger("taskflow_jobs.webhooks")


class _Stop(Exception):
    pass


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """Exit 0 after a graceful stop on SIGTERM / Ctrl-C.

    uvicorn shuts down gracefully on these signals, then re-raises the signal against the
    handler that was installed before it started; with the default handler the process
    would die by the signal (exit -15) after a clean shutdown.
    """

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stop:
        log.info("webhook receiver stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ReceiverConfigError(RuntimeError):
    """The receiver must not start; the message says which setting to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth_settings(settings: Settings, host: str, insecure_dev: bool) -> None:
    secrets = secrets_of(settings)
    if not secrets:
        if not insecure_dev:
            raise ReceiverConfigError(
                "WEBHOOK_SECRET is not set: the receiver will not accept unauthenticated "
                "requests. Set WEBHOOK_SECRET (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'), or pass --insecure-dev for local "
                "development on a loopback address"
            )
        if not is_loopback(host):
            raise ReceiverConfigError(
                f"--insecure-dev only listens on a loopback address, not {host}: "
                "set WEBHOOK_SECRET to listen elsewhere (WEBHOOK_HOST)"
            )
        return
    if settings.webhook_secret is None:
        raise ReceiverConfigError("WEBHOOK_SECRET_PREVIOUS is set but WEBHOOK_SECRET is not")
    for secret in secrets:
        try:
            check_secret(secret)
        except ValueError as exc:
            raise ReceiverConfigError(str(exc)) from None


def check_database(url: str) -> None:
    """The database must answer and carry the receiver's objects (migrations applied)."""
    with db.connect(url, autocommit=True) as conn:
        if not conn.execute(query("webhook_ready")).fetchone()["ready"]:
            raise ReceiverConfigError(
                f"database {db.redact_url(url)} is not migrated: run `taskflow-jobs migrate`"
            )


def run_receiver(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    insecure_dev: bool = False,
    access_log: bool = False,
) -> None:
    host = host or settings.webhook_host
    port = port or settings.webhook_port
    check_auth_settings(settings, host, insecure_dev)
    try:
        net.check_port_free(host, port, "the webhook receiver", "WEBHOOK_PORT")
    except net.PortInUse as exc:
        raise ReceiverConfigError(str(exc)) from None
    url = db.database_url(settings)
    if settings.database_url is None:
        db.migrate(url)  # the embedded database is local development: make it ready
    check_database(url)
    prefect_api_url = configured_api_url()
    if prefect_api_url is None:
        log.warning(
            "PREFECT_API_URL is not set: /api/events answers 503 and no taskflow.email.enqueued "
            "events are sent (the email-dispatch sweep still sends every job)"
        )
    if not secrets_of(settings):
        log.warning("--insecure-dev: accepting requests WITHOUT authentication on %s", host)
    pool = store.make_pool(url, size=settings.webhook_db_pool_size)
    app = create_app(settings, pool, prefect_api_url=prefect_api_url, insecure_dev=insecure_dev)
    log.info(
        "webhook receiver on http://%s:%d (database %s, Prefect %s)",
        host,
        port,
        db.redact_url(url),
        prefect_api_url or "not configured",
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    with _stopped_by_signals():
        server.run()
    if not server.started:
        raise ReceiverConfigError(f"the webhook receiver could not start on {host}:{port}")
