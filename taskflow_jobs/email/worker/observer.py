"""Reporting `consume`'s work to Prefect from the side, so Prefect never gates delivery.

The delivery loop only calls the non-blocking methods here (`burst_started`,
`burst_ended`, and `record` through the burst's stats); a background thread does every
Prefect call with a short deadline and no client retries:

- each burst of work becomes an `email-dispatch` flow run named for the consumer and its
  start time: Running while it lasts (with heartbeats, so a killed consumer's run is
  marked Crashed by the automation), then its final state and its table artifact;
- the dead-letter events waiting in the outbox table are published;
- a circuit breaker: the first call that fails or times out logs ONE warning and opens
  an outage; from then on only a cheap health probe runs every few seconds, and the
  outcomes of every send are counted for the outage. When Prefect answers again, the
  outage becomes a flow run of its own with the counts, from when to when, the outbox
  is published (the automations alert on those dead letters now), and ONE info line
  with the counts is logged. The counts are checkpointed in PostgreSQL every second
  (`jobs/outages.py`): the outage of a consumer killed meanwhile is reported by the next
  one that reaches Prefect.

Bursts that began and ended inside an outage are covered by the outage's run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg
from prefect.client.orchestration import SyncPrefectClient
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from taskflow_jobs.db import DatabaseUnavailable
from taskflow_jobs.email.outcomes import Action, DispatchStats, Outcome
from taskflow_jobs.email.worker.prefect_calls import PrefectCalls
from taskflow_jobs.jobs import outages, outbox

log = logging.getLogger(__name__)

ARTIFACT_KEY = "email-dispatch"
OUTAGE_ARTIFACT_KEY = "email-dispatch-outage"


@dataclass(frozen=True)
class ObserverTiming:
    call_timeout: float = 3.0  # one Prefect request, connect to last byte
    probe_interval: float = 5.0  # while Prefect is unreachable
    heartbeat_interval: float = 30.0
    outbox_interval: float = 10.0  # the flow of the sweep publishes too
    checkpoint_interval: float = 1.0  # an open outage's counts saved in PostgreSQL
    orphan_after: float = 10.0  # an outage not checkpointed this long lost its consumer
    stop_timeout: float = 5.0  # final reports at shutdown, then give up


@dataclass
class ObservedStats(DispatchStats):
    """A burst's stats that also count toward the open outage, if any."""

    observer: Observer | None = None

    def record(self, outcomes: list[Outcome]) -> None:
        super().record(outcomes)
        if self.observer is not None:
            self.observer.record(outcomes)


@dataclass
class Burst:
    started: datetime
    stats: ObservedStats
    ended: datetime | None = None
    error: str | None = None
    run_id: UUID | None = None
    flow_id: UUID | None = None
    name: str = ""
    beat_at: float = 0.0


@dataclass
class Outage:
    started: datetime
    since: float  # monotonic
    reason: str
    stats: DispatchStats = field(default_factory=DispatchStats)
    row_id: int | None = None  # its checkpoint in jobs.prefect_outages
    saved_at: float = 0.0  # monotonic


def _now() -> datetime:
    return datetime.now(UTC)


def summary_text(summary: dict[str, Any]) -> str:
    return (
        f"{summary['sent']} sent, {summary['retried']} retried, "
        f"{summary['dead-lettered']} dead-lettered, {summary['released']} released"
    )


class Observer(PrefectCalls):
    """One per `consume` process: its window into Prefect, never in the way of a send."""

    def __init__(
        self,
        api_url: str,
        label: str,
        database_url: str,
        timing: ObserverTiming = ObserverTiming(),
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.label = label
        self.database_url = database_url
        self.timing = timing
        self.outage: Outage | None = None
        self._lock = threading.Lock()
        self._bursts: list[Burst] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outbox_at = 0.0
        self._next_probe = 0.0
        self._client: Any = None
        # outcomes since Prefect last answered: they open the outage's counts if it fails
        self._unconfirmed = DispatchStats()
        self._contact_at = _now()
        self._contact_mono = time.monotonic()

    # --- delivery side: never blocks -------------------------------------------------

    def burst_started(self) -> Burst:
        stats = ObservedStats(observer=self)
        burst = Burst(started=_now(), stats=stats)
        with self._lock:
            self._bursts.append(burst)
        self._wake.set()
        return burst

    def burst_ended(self, burst: Burst, error: BaseException | None = None) -> None:
        if error is not None:
            burst.error = f"{type(error).__name__}: {error}"[:500]
        burst.ended = _now()
        self._wake.set()

    def record(self, outcomes: list[Outcome]) -> None:
        with self._lock:
            (self.outage.stats if self.outage is not None else self._unconfirmed).record(outcomes)
        if any(o.action is Action.DEAD_LETTERED for o in outcomes):
            self._outbox_at = 0.0  # publish the new dead letters' events soon
            self._wake.set()

    @property
    def reachable(self) -> bool:
        return self.outage is None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Observer:
        self._thread = threading.Thread(target=self._main, name="prefect-observer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Report what is finished if Prefect answers within the stop timeout, then return."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.timing.stop_timeout)
            if self._thread.is_alive():
                log.warning("Prefect did not take the last reports in time; not waiting")

    def _main(self) -> None:
        # one attempt per call: the circuit breaker, not the client, decides when to retry
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
            timeout = httpx.Timeout(self.timing.call_timeout)
            with SyncPrefectClient(self.api_url, httpx_settings={"timeout": timeout}) as client:
                self._client = client
                if self._probe():
                    log.info("reporting each burst to Prefect at %s", self.api_url)
                while True:
                    stopping = self._stop.is_set()
                    try:
                        self.step()
                    except Exception:  # a bug here must not end the reports
                        log.exception("reporting to Prefect failed")
                    if stopping:
                        return
                    self._wake.wait(self._sleep())
                    self._wake.clear()

    def _sleep(self) -> float:
        if self.outage is not None:
            due = min(self._next_probe, self.outage.saved_at + self.timing.checkpoint_interval)
            return max(0.05, due - time.monotonic())
        return 1.0

    # --- the observer thread ---------------------------------------------------------

    def step(self) -> None:
        """One round: probe or report, whatever is due."""
        if self.outage is not None:
            self._checkpoint(self.outage)
            if time.monotonic() < self._next_probe:
                return
            if not self._probe():
                return
            if not self._close_outage():
                return
        try:
            self._report_bursts()
            if self._publish_outbox() is not None:  # its round: the orphans too
                self._report_orphans()
            if time.monotonic() - self._contact_mono >= self.timing.probe_interval:
                if not self._probe():
                    return
            else:
                self._confirm()
        except httpx.HTTPError as exc:
            self._open_outage(exc)

    def _confirm(self) -> None:
        """Prefect answered: what was sent before now is not part of any outage."""
        with self._lock:
            if self.outage is None:
                self._unconfirmed = DispatchStats()
                self._contact_at = _now()
                self._contact_mono = time.monotonic()

    def _probe(self) -> bool:
        exc = self._client.api_healthcheck()
        if exc is None:
            self._confirm()
            return True
        self._open_outage(exc)
        self._next_probe = time.monotonic() + self.timing.probe_interval
        return False

    def _open_outage(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        with self._lock:
            if self.outage is None:
                # it began after Prefect last answered: count what was sent since then
                self.outage = Outage(self._contact_at, self._contact_mono, reason)
                self.outage.stats = self._unconfirmed
                log.warning(
                    "Prefect API at %s unreachable (%s): delivering without Prefect; what is "
                    "sent meanwhile is reported there when it answers again",
                    self.api_url,
                    reason,
                )
        self._next_probe = time.monotonic() + self.timing.probe_interval

    def _close_outage(self) -> bool:
        """Report the outage as a run of its own; False if Prefect failed again."""
        outage = self.outage
        assert outage is not None
        ended = _now()
        with self._lock:
            summary = outage.stats.summary()
            table = outage.stats.table()
            dead = summary["dead-lettered"]
        name = f"{self.label} outage {outage.started:%Y-%m-%d %H:%M:%S}Z-{ended:%H:%M:%S}Z"
        description = (
            f"Prefect was unreachable from {outage.started:%Y-%m-%d %H:%M:%S}Z to "
            f"{ended:%H:%M:%S}Z ({(ended - outage.started).total_seconds():.0f}s; "
            f"{outage.reason}). Meanwhile {self.label}: {summary_text(summary)}."
        )
        try:
            run = self._create_run(name, outage.started)
            self._artifact(run.id, OUTAGE_ARTIFACT_KEY, table, description)
            self._finish(run.id, description, dead, None, summary)
            with self._lock:
                self.outage = None
                # bursts that began and ended during the outage are covered by its run
                self._bursts = [b for b in self._bursts if b.run_id or b.ended is None]
        except httpx.HTTPError:
            self._next_probe = time.monotonic() + self.timing.probe_interval
            return False
        if outage.row_id is not None:
            self._database(outages.forget, outage.row_id)
        published = self._publish_outbox(force=True)
        self._report_orphans()
        log.info(
            "Prefect API answers again after %.0fs: while it was unreachable %s; "
            "reported as flow run %r%s",
            time.monotonic() - outage.since,
            summary_text(summary),
            name,
            f", {published} dead-letter event(s) published" if published else "",
        )
        return True

    def _report_bursts(self) -> None:
        with self._lock:
            bursts = list(self._bursts)
        for burst in bursts:
            if burst.run_id is None:
                burst.name = f"{self.label} {burst.started:%Y-%m-%d %H:%M:%S}Z"
                run = self._create_run(burst.name, burst.started)
                burst.run_id, burst.flow_id = run.id, run.flow_id
                burst.beat_at = 0.0
            if burst.ended is None:
                if time.monotonic() - burst.beat_at >= self.timing.heartbeat_interval:
                    burst.beat_at = time.monotonic()
                    self._heartbeat(burst.run_id, burst.flow_id, burst.name)
                continue
            summary = {**burst.stats.summary(), "batches": burst.stats.batches}
            description = f"{summary_text(summary)} in {burst.stats.batches} batches"
            self._artifact(burst.run_id, ARTIFACT_KEY, burst.stats.table(), description)
            self._finish(burst.run_id, description, summary["dead-lettered"], burst.error, summary)
            with self._lock:
                self._bursts.remove(burst)

    def _publish_outbox(self, *, force: bool = False) -> int | None:
        """Publish the waiting dead-letter events; None if it was not time to."""
        if not force and time.monotonic() < self._outbox_at:
            return None
        self._outbox_at = time.monotonic() + self.timing.outbox_interval
        try:
            return outbox.publish(self.database_url, self._post_events)
        except (DatabaseUnavailable, psycopg.Error) as exc:  # the next round tries again
            log.info("dead-letter events stay in the outbox: database: %s", exc)
            return 0

    # --- outages kept in PostgreSQL (jobs/outages.py) ---------------------------------

    def _database(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(self.database_url, *args, **kwargs)
        except (DatabaseUnavailable, psycopg.Error) as exc:  # the next round tries again
            log.debug("outage checkpoint: database: %s", exc)
            return None

    def _checkpoint(self, outage: Outage) -> None:
        if time.monotonic() - outage.saved_at < self.timing.checkpoint_interval:
            return
        outage.saved_at = time.monotonic()
        with self._lock:
            summary, rows = outage.stats.summary(), outage.stats.table()
        saved = self._database(
            outages.checkpoint, outage.row_id, consumer=self.label, started=outage.started,
            reason=outage.reason, summary=summary, rows=rows,
        )  # fmt: skip
        if saved is not None:
            outage.row_id = saved

    def _report_orphans(self) -> None:
        try:
            reported = self._database(
                outages.report_orphans, self._report_orphan, self.timing.orphan_after
            )
        except httpx.HTTPError:  # they stay for the next round
            return
        if reported:
            log.info("reported %d outage(s) of consumers that stopped meanwhile", reported)

    def _report_orphan(self, row: dict[str, Any]) -> None:
        started, seen, summary = row["started_at"], row["seen_at"], row["summary"]
        name = f"{row['consumer']} outage {started:%Y-%m-%d %H:%M:%S}Z-{seen:%H:%M:%S}Z"
        description = (
            f"Prefect was unreachable from {started:%Y-%m-%d %H:%M:%S}Z ({row['reason']}); "
            f"{row['consumer']} stopped before it answered again. Until {seen:%H:%M:%S}Z "
            f"it had: {summary_text(summary)}."
        )
        run = self._create_run(name, started)
        self._artifact(run.id, OUTAGE_ARTIFACT_KEY, row["rows"], description)
        self._finish(run.id, description, summary["dead-lettered"], None, summary)
