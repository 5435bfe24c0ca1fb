"""Heartbeats of our flow runs, for the automation that marks silent runs Crashed.

Prefect's engine can send them itself (PREFECT_FLOWS_HEARTBEAT_FREQUENCY), but its thread
checks the run's state and then emits, so a heartbeat can land just after the run's
Completed event; the automation then waits for a heartbeat that never comes and tries to
crash a finished run ("Action failed: ... already in terminal state"). Ours stop, and
are delivered, before the flow function returns: every heartbeat of a run precedes its
final state, so the automation acts only on runs that really went silent.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar, cast

from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.events.worker import EventsWorker

log = logging.getLogger(__name__)

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
HEARTBEAT_SECONDS = 30.0
DRAIN_SECONDS = 5.0  # longest wait for the last heartbeat to reach the server

F = TypeVar("F", bound=Callable[..., Any])


def _resources() -> tuple[dict[str, str], list[dict[str, str]]] | None:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None  # not inside a flow run (unit tests call flow functions with .fn)
    run = context.flow_run
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{run.id}",
        "prefect.resource.name": run.name,
    }
    related = [
        {
            "prefect.resource.id": f"prefect.flow.{run.flow_id}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": context.flow.name if context.flow else "",
        }
    ]
    if run.deployment_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                "prefect.resource.role": "deployment",
            }
        )
    return resource, related


class _Beats:
    """A thread that emits a run's heartbeat every `every` seconds until stopped."""

    def __init__(self, every: float) -> None:
        self.resources = _resources()
        self.every = every
        self.stop_event = threading.Event()
        # the thread sees this context's settings (PREFECT_API_URL set by temporary_settings)
        context = contextvars.copy_context()
        self.thread = threading.Thread(
            target=context.run, args=(self._beat,), name="taskflow-heartbeat", daemon=True
        )

    def start(self) -> None:
        if self.resources is not None:
            self.thread.start()

    def _beat(self) -> None:
        assert self.resources is not None
        resource, related = self.resources
        while True:
            try:
                emit_event(HEARTBEAT_EVENT, resource=resource, related=related)
            except Exception as exc:  # a heartbeat is best effort; the run goes on
                log.debug("heartbeat not sent: %s", type(exc).__name__)
            if self.stop_event.wait(self.every):
                return

    def stop(self) -> None:
        """Stop, then wait (at most DRAIN_SECONDS) until the last heartbeat was sent.
        Blocking: async callers run it in a thread."""
        if self.resources is None:
            return
        self.stop_event.set()
        self.thread.join(DRAIN_SECONDS)
        try:
            EventsWorker.drain_all(timeout=DRAIN_SECONDS)
        except Exception as exc:
            log.debug("heartbeats not drained: %s", type(exc).__name__)


@contextmanager
def heartbeats(every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Emit heartbeats while the block runs; all of them are sent before it ends."""
    beats = _Beats(every)
    beats.start()
    try:
        yield
    finally:
        beats.stop()


@asynccontextmanager
async def aheartbeats(every: float = HEARTBEAT_SECONDS) -> AsyncIterator[None]:
    """`heartbeats` for async flows (the final drain runs in a thread)."""
    beats = _Beats(every)
    beats.start()
    try:
        yield
    finally:
        await asyncio.to_thread(beats.stop)


def heartbeating(fn: F) -> F:
    """Run the flow function `fn` (sync or async) with heartbeats.

    The wrapper carries `fn`'s signature with its annotations evaluated: Prefect builds
    the parameter model from it, and string annotations (`from __future__ import
    annotations`) would otherwise be resolved in this module, not in the flow's.
    """
    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            async with aheartbeats():
                return await fn(*args, **kwargs)

        wrapper = run_async
    else:

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with heartbeats():
                return fn(*args, **kwargs)

        wrapper = run
    setattr(wrapper, "__signature__", inspect.signature(fn, eval_str=True))  # noqa: B010
    wrapper.__annotations__ = typing.get_type_hints(fn)
    return cast(F, wrapper)
