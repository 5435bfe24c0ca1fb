"""Which dispatcher a flow run uses: the long-lived one of `consume`, or a fresh one.

`consume` keeps a LISTEN connection, a connection pool and the provider's HTTP client
open across the flow runs it starts; flow parameters must be JSON, so it hands its
dispatcher over through a context variable instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

from taskflow_jobs.db import database_url
from taskflow_jobs.email.worker.batch import Dispatcher
from taskflow_jobs.settings import Settings

_shared: ContextVar[Dispatcher | None] = ContextVar("taskflow_email_dispatcher", default=None)


@contextmanager
def sharing(dispatcher: Dispatcher) -> Iterator[Dispatcher]:
    """Make flow runs started inside this block use `dispatcher` (`consume` does this:
    its LISTEN connection, pool and HTTP client outlive each flow run)."""
    token = _shared.set(dispatcher)
    try:
        yield dispatcher
    finally:
        _shared.reset(token)


@asynccontextmanager
async def dispatcher_for_run(
    settings: Settings, *, listen: bool = False
) -> AsyncIterator[Dispatcher]:
    """The shared dispatcher if `consume` installed one, else a fresh one for this run."""
    shared = _shared.get()
    if shared is not None:
        yield shared
        return
    dispatcher = Dispatcher(settings, database_url(settings))
    await dispatcher.open(listen=listen)
    try:
        yield dispatcher
    finally:
        await dispatcher.close()
