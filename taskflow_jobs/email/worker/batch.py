"""Sending one batch of email jobs: claim, parse, look up, render, send, settle.

`Dispatcher.run_batch` is the unit of work that the `email-dispatch` flow runs as ONE
Prefect task. What becomes of each message is decided in `decide.py` (a missing profile
or a template problem is a dead letter too, from rendering here), and the batch settles
as the results come in (`Settler`, `Arrivals`, acks on the event loop: `SettleLine`): a
kill re-sends only what was not settled; an unavailable provider raises
`ProviderUnavailable` afterwards. Other blocking work (psycopg, smtplib) runs in threads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from taskflow_jobs.backoff import RetryPolicy
from taskflow_jobs.db import Connection, DatabaseUnavailable, check_idle, connect, redact_url
from taskflow_jobs.email.compose import (
    OutgoingEmail,
    ParsedMessage,
    Undeliverable,
    compose,
    parse_sender,
)
from taskflow_jobs.email.consent import ConsentCheck, hard_bounces, suppress
from taskflow_jobs.email.outcomes import BatchReport, DispatchStats, Outcome, log_outcomes
from taskflow_jobs.email.providers import (
    Provider,
    ProviderSession,
    ProviderUnavailable,
    SendControl,
    SendResult,
    SendStatus,
    create_provider,
)
from taskflow_jobs.email.render import Renderer, TemplateProblem
from taskflow_jobs.email.worker.decide import dead_letter, decide, parse_all
from taskflow_jobs.email.worker.settle import Arrivals, SettleLine, Settler, settle_trip
from taskflow_jobs.jobs import queue
from taskflow_jobs.jobs.metrics import record_outcomes
from taskflow_jobs.jobs.wakeup import Listener, Waker, wait_for
from taskflow_jobs.settings import EMAIL_QUEUE, Settings
from taskflow_jobs.sql import query

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime | None]

# Errors of the infrastructure rather than of a message: the batch is worth retrying whole.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    ProviderUnavailable,
    DatabaseUnavailable,
    psycopg.OperationalError,
    PoolTimeout,
)


# ... and a failed suppression of hard bounces, which must not cancel the batch's sends
SUPPRESS_ERRORS: tuple[type[BaseException], ...] = (*INFRASTRUCTURE_ERRORS, psycopg.Error)


class Ticket:
    """Lets the loop that started a batch know when the batch has made its first claim,
    so it does not count those messages as still waiting and start a batch too many."""

    def __init__(self) -> None:
        self.claimed = asyncio.Event()


# Render this many emails, start sending them, then render the next slice (~2 ms each).
RENDER_SLICE = 25
# A settle that is not acks alone (or a release, a suppression) waits this long for a
# pooled connection, then opens its own: after a PostgreSQL restart the pool reconnects on
# a backoff (1 s, 2 s, ...); with the database down a release fails at once, not in 15 s.
SETTLE_POOL_WAIT = 0.1


def _no_clock() -> datetime | None:
    return None  # the database's now()


class Dispatcher:
    """Claims and sends email batches; one per process, shared by its flow runs.

    `clock` lets tests move time: it is passed as `now` to every queue operation.
    """

    def __init__(
        self,
        settings: Settings,
        url: str,
        *,
        provider: Provider | None = None,
        clock: Clock = _no_clock,
    ) -> None:
        self.settings = settings
        self.url = url
        self.queue = EMAIL_QUEUE
        self.batch_size = settings.email_batch_size
        self.visibility_timeout = settings.email_visibility_timeout
        self.sender = parse_sender(settings.email_from)
        self.provider = provider or create_provider(settings, database_url=url)
        self.renderer = Renderer()
        self.consent = ConsentCheck(settings)  # opt-outs and suppressions -> skipped
        self.policy = RetryPolicy(
            settings.email_backoff_base, settings.email_backoff_cap, settings.email_max_attempts
        )
        self.clock = clock
        self.stop_event = asyncio.Event()
        self.waker = Waker()
        self.listener: Listener | None = None
        self.open_batches = 0  # batches whose window is open: they take new arrivals
        self.settle_line = SettleLine(
            lambda requests: asyncio.to_thread(self._settle_transaction, settle_trip, requests),
            url,
        )
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=settings.email_concurrency + 2,
            # autocommit: a settle's one statement is one round trip (no BEGIN, COMMIT);
            # whatever needs several opens its transaction (`_in_transaction`)
            kwargs={"row_factory": dict_row, "connect_timeout": 10, "autocommit": True},
            open=False,
            timeout=15,
            name="taskflow-email",
            # a connection a PostgreSQL restart closed is replaced, not handed out
            check=check_idle,
        )

    # --- lifecycle -------------------------------------------------------------------

    async def open(self, *, listen: bool = False) -> Dispatcher:
        # one plain connection first: fails at once, with the reason, if the database is down
        await asyncio.to_thread(lambda: connect(self.url).close())
        try:
            await asyncio.to_thread(self.pool.open, wait=True, timeout=15)
        except PoolTimeout:
            raise DatabaseUnavailable(f"cannot connect to {redact_url(self.url)}") from None
        await self._db(self._sync_queue_settings)
        if listen:
            self.listener = Listener(self.url, queue.CHANNEL, self.queue, self.waker)
            self.listener.start()
        return self

    async def reconfigure(self, settings: Settings) -> None:
        """Use new email settings (a block edited in the UI) from the next batch on.

        Called between bursts, when no batch holds the provider. The database and the
        pool stay: a new DATABASE_URL needs a restart.
        """
        old = self.provider
        self.settings = settings
        self.sender = parse_sender(settings.email_from)
        self.provider = create_provider(settings)
        self.batch_size = settings.email_batch_size
        self.visibility_timeout = settings.email_visibility_timeout
        self.policy = RetryPolicy(
            settings.email_backoff_base, settings.email_backoff_cap, settings.email_max_attempts
        )
        await old.aclose()

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        await self.provider.aclose()
        await self.settle_line.aclose()
        await asyncio.to_thread(self.pool.close)

    async def __aenter__(self) -> Dispatcher:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def request_stop(self) -> None:
        """Stop claiming; batches finish what they are sending and release the rest."""
        self.stop_event.set()
        self.waker.fire()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    # --- database --------------------------------------------------------------------

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._in_transaction, fn, *args)

    def _in_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        with self.pool.connection() as conn, conn.transaction():  # commits on success
            return fn(conn, *args)

    def _settle_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn` on an autocommit connection: its statement commits in its own round trip
        (no BEGIN and COMMIT around it); `fn` opens a transaction where it has several."""
        try:
            with self.pool.connection(timeout=SETTLE_POOL_WAIT) as conn:
                return fn(conn, *args)
        except PoolTimeout:  # none free, or the pool is reconnecting: do not wait for it
            pass
        with connect(self.url, autocommit=True, connect_timeout=2) as conn:
            return fn(conn, *args)

    def _sync_queue_settings(self, conn: Connection) -> None:
        """New messages get EMAIL_MAX_ATTEMPTS attempts (the queue's default)."""
        params = {"queue": self.queue, "max_attempts": self.settings.email_max_attempts}
        if conn.execute(query("email_sync_max_attempts"), params).fetchone():
            log.info("queue %s: max_attempts set to %s", self.queue, params["max_attempts"])

    async def visible(self, limit: int) -> int:
        """How many messages could be claimed now (at most `limit`)."""
        params = {"queue": self.queue, "now": self.clock(), "limit": limit}
        return await self._db(
            lambda c: c.execute(query("email_visible_count"), params).fetchone()["n"]
        )

    async def next_visible_in(self) -> float | None:
        """Seconds until the next message (pending or leased) becomes claimable."""
        params = {"queue": self.queue, "now": self.clock()}
        row = await self._db(lambda c: c.execute(query("email_next_visible_in"), params).fetchone())
        return None if row["seconds"] is None else max(0.0, float(row["seconds"]))

    # --- one batch -------------------------------------------------------------------

    async def run_batch(
        self,
        window: float = 0.0,
        stats: DispatchStats | None = None,
        ticket: Ticket | None = None,
    ) -> BatchReport:
        """Claim and send up to `batch_size` messages, settling each claim as it completes.

        With `window` > 0 (the `consume` path) it keeps claiming what arrives during the
        window: a trickle of signups is sent at once for about one Prefect task run per window.
        """
        report = BatchReport()
        closes_at = time.monotonic() + window
        is_open = window > 0
        self.open_batches += is_open
        try:
            with self.waker.subscribe() as wake:
                async with self.provider.session() as session:
                    while not self.stopping and report.claimed < self.batch_size:
                        wake.clear()
                        wanted = self.batch_size - report.claimed
                        batch = await self._db(self._claim, wanted)
                        report.claims += 1
                        if ticket is not None:
                            ticket.claimed.set()
                        if batch.messages:
                            report.claimed += len(batch)
                            await self._process(batch, session, report, stats)
                        remaining = closes_at - time.monotonic()
                        if remaining <= 0 or len(batch) == wanted:
                            break
                        await wait_for(wake, remaining)
        finally:
            self.open_batches -= is_open
            if ticket is not None:
                ticket.claimed.set()
        return report

    def _claim(self, conn: Connection, limit: int) -> queue.Batch:
        return queue.claim(conn, self.queue, limit, self.visibility_timeout, now=self.clock())

    async def _process(
        self,
        batch: queue.Batch,
        session: ProviderSession,
        report: BatchReport,
        stats: DispatchStats | None,
    ) -> None:
        # the slowest send (provider timeout) and its settle still fit in the lease
        margin = self.settings.provider_timeout + self.settings.email_settle_margin
        claimed_at = time.monotonic()
        lease_ends = claimed_at + self.visibility_timeout - margin

        def settled(outcomes: list[Outcome]) -> None:
            report.outcomes += outcomes
            record_outcomes(outcomes, self.provider.name)
            if stats is not None:
                stats.record(outcomes)
            log_outcomes(outcomes)

        # a settle that fails is retried while the lease lasts (kept: a safety second)
        settler = self._settler(batch, settled, claimed_at + self.visibility_timeout - 1.0)
        done = False
        sending: dict[asyncio.Task, list[tuple[queue.Message, OutgoingEmail]]] = {}
        results: list[SendResult] = []
        arrivals = Arrivals(settler, batch.messages, self.decide)
        try:
            parsed, failed = parse_all(batch.messages)
            await settler.add(failed)
            profiles, screening = await self._db(self.consent.look_up, parsed)
            parsed, links = screening.kept, screening.links
            await settler.add(screening.skipped)
            control = SendControl(self.stop_event, lease_ends, arrivals)
            # render a slice, start sending it, render the next: the provider is busy
            # while we render, and other batches' traffic is not held up by ours
            for start in range(0, len(parsed), RENDER_SLICE):
                emails, failed = self._render(parsed[start : start + RENDER_SLICE], profiles, links)
                await settler.add(failed)
                if emails:
                    lane = replace(control, urgent=True) if emails[0][0].priority == 0 else control
                    task = asyncio.create_task(session.send([e for _, e in emails], lane))
                    sending[task] = emails
                await asyncio.sleep(0)
            # settle as the results come in, not once at the end of the batch
            waiting = set(sending)
            while waiting:
                finished, waiting = await arrivals.wait(waiting)
                for task in finished:
                    chunk = task.result()
                    results += chunk
                    if bounces := hard_bounces(sending[task], chunk):
                        await self._suppress(bounces)
                    await settler.add(arrivals.rest(zip(sending[task], chunk, strict=True)))
                await settler.flush_if_due()
            await settler.flush()
            done = True
        finally:
            if not done:  # an error or a cancellation: give back what is not settled
                for task in sending:
                    task.cancel()
                await settler.quiesce()
                if not settler.gave_up:  # on a cancel, ack what was delivered first
                    with contextlib.suppress(Exception):
                        await settler.flush(patient=False)
                unsettled = [i for i in batch.ids if i not in settler.settled]
                await self._release_quietly(batch, unsettled)
        down = [r.error for r in results if r.status is SendStatus.UNAVAILABLE]
        if down:
            report.unavailable = down[0]
            raise ProviderUnavailable(down[0])

    async def _suppress(self, bounces: dict[str, str]) -> None:
        """Suppress hard-bounced addresses; an error must not cancel the other sends."""
        try:
            await asyncio.to_thread(self._settle_transaction, suppress, bounces, self.provider.name)
        except SUPPRESS_ERRORS as exc:
            log.warning("could not suppress %d bounced address(es): %s", len(bounces), exc)

    def _settler(
        self, batch: queue.Batch, settled: Callable[[list[Outcome]], None], deadline: float
    ) -> Settler:
        async def settle(outcomes: list[Outcome]) -> list[Outcome]:
            return await self.settle_line.settle(batch.token, outcomes, self.clock())

        return Settler(
            settle,
            settled,
            every=self.settings.email_settle_every,
            interval=self.settings.email_settle_interval,
            attempts=self.settings.email_settle_attempts,
            retry_errors=INFRASTRUCTURE_ERRORS,
            deadline=deadline,
        )

    def _render(
        self, parsed: Sequence[tuple[queue.Message, ParsedMessage]], profiles: dict, links: dict
    ) -> tuple[list[tuple[queue.Message, OutgoingEmail]], list[Outcome]]:
        """Render messages; the ones that cannot become an email become dead letters."""
        emails, failed = [], []
        for message, payload in parsed:
            try:
                link = links.get(message.id)
                composed = compose(message.id, payload, profiles, self.renderer, self.sender, link)
                emails.append((message, composed))
            except (Undeliverable, TemplateProblem) as exc:
                failed.append(dead_letter(message, str(exc)))
            except Exception as exc:  # a bug must not block the rest of the batch
                log.exception("rendering message %s failed", message.id)
                reason = f"internal error while rendering: {exc!r}"[:500]
                failed.append(dead_letter(message, reason))
        return emails, failed

    def decide(self, message: queue.Message, result: SendResult) -> Outcome:
        """What to do with a message after its send result (pure)."""
        return decide(message, result, self.policy)

    async def _release_quietly(self, batch: queue.Batch, ids: list[int] | None = None) -> None:
        ids = batch.ids if ids is None else ids
        if not ids:
            return
        try:
            await asyncio.shield(
                asyncio.to_thread(self._settle_transaction, queue.release, batch.token, ids)
            )
        except Exception as exc:  # the lease will expire and the messages come back anyway
            log.warning("could not release messages %s: %s", ids, type(exc).__name__)
