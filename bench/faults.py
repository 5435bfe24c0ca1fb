"""Fault soak of the delivery path. Prints one JSON object as its last line.

The real stack: an embedded PostgreSQL (the app database and Prefect's), a Prefect server,
the SendGrid stand-in in its own process answering 500 to ~10 % of requests, 429 with
`Retry-After` to ~5 % and hanging past the client's timeout for ~1 % (seeded), and two
`taskflow-jobs consume` processes. Signups are INSERTed at a steady rate (the trigger
enqueues each welcome email in the same transaction) while each consumer is SIGKILLed and
restarted every ~10 s, the Prefect server is stopped for 60 s (then started again) and
frozen with SIGSTOP for 60 s, and PostgreSQL is restarted (`pg_ctl restart -m fast`) twice.
Writing goes on until the last fault is over and at least `--signups` were written; then
the consumers drain the queue with no more faults.

The rate is 12 signups/s because of the 429s: each asks for `Retry-After: 1`, and every
consumer honours it (the shared backoff), so with 5 % of requests refused that way a
compliant sender tops out near 20 requests/s (~17 emails/s with the retries of the 500s).

Reported: lost (no copy accepted and not dead-lettered; goal 0), duplicates (goal <= 0.1 %,
each explained by a fault between the provider's accept and the ack), delivery latency
(INSERT issued -> first accepted copy) p50/p99 before, during and after the Prefect outage
(goal: p99 during <= 2x p99 before; the kills go on in every phase) and, per fault, the
seconds until new signups are delivered at the normal pace again. `--small` is the
deterministic version `make test` runs (tests/e2e/test_fault_soak.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

# bench/ holds queue.py, which would shadow the stdlib `queue` module: take bench/ off the
# import path and put the project root there instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench._scratch import migrated_database, scratch_postgres  # noqa: E402
from bench._soak_parts import Consumer, PrefectServer, restart_postgres, stand_in  # noqa: E402
from bench._soak_report import Fault, ack_lag, analyse  # noqa: E402
from taskflow_jobs import db, net  # noqa: E402

API_KEY = "SG.soak-key"
SENDGRID_TIMEOUT = 2.0
# a duplicate is explained by a kill this soon after the provider accepted the first copy
ACK_BOUND = 1.0


@dataclass(frozen=True)
class Plan:
    signups: int = 20_000  # at least; writing goes on until the last fault is over
    rate: float = 12.0  # signups per second (see below: the 429s cap the sending rate)
    consumers: int = 2
    kill_every: float = 10.0  # seconds between SIGKILLs of one consumer (staggered, +-20 %)
    warmup: float = 60.0  # seconds of traffic and kills before the Prefect outage
    prefect_stop: float = 60.0
    prefect_freeze: float = 60.0
    pg_restarts: int = 2
    pg_gap: float = 20.0  # seconds between the outage's end and each PostgreSQL restart
    faults: str = "500=0.10,429=0.05,hang=0.01"
    seed: int = 1
    drain_timeout: float = 300.0


SMALL = Plan(
    signups=200, rate=10, kill_every=5, warmup=5, prefect_stop=6, prefect_freeze=0,
    pg_restarts=1, pg_gap=5, drain_timeout=150,
)  # fmt: skip


def consumer_env(database_url: str, stub_url: str, prefect_api: str, root: Path) -> dict[str, str]:
    """A lease short enough that a killed consumer's claim comes back within seconds, and
    still longer than the provider timeout plus the settle margin (settings check it)."""
    return {
        "DATABASE_URL": database_url,
        "TASKFLOW_DATA_DIR": str(root / "data"),
        "EMAIL_PROVIDER": "sendgrid",
        "SENDGRID_API_URL": stub_url,
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_TIMEOUT": str(SENDGRID_TIMEOUT),
        "EMAIL_VISIBILITY_TIMEOUT": "8",
        "EMAIL_SETTLE_MARGIN": "1",
        "EMAIL_BACKOFF_BASE": "1",
        "EMAIL_BACKOFF_CAP": "8",
        "EMAIL_MAX_ATTEMPTS": "10",
        "TASKFLOW_PREFECT_TIMEOUT": "2",
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(root / "prefect-home"),
    }


@dataclass
class Recorder:
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, begin: float, end: float) -> None:
        with self.lock:
            self.faults.append(Fault(kind, begin, end))


def write_signups(url: str, plan: Plan, done: threading.Event, out: dict, stats: dict) -> None:
    """INSERT signups at `plan.rate` until `plan.signups` are written and `done` is set.
    A failed INSERT (PostgreSQL restarting) is retried with the same id, so an INSERT that
    committed before its connection broke is not written twice."""
    conn: psycopg.Connection | None = None
    started, i = time.monotonic(), 0
    while i < plan.signups or not done.is_set():
        time.sleep(max(0.0, started + i / plan.rate - time.monotonic()))
        user = uuid.uuid4()
        while True:
            issued = time.time()
            try:
                if conn is None:
                    conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
                conn.execute(
                    "INSERT INTO auth.users (id, email, raw_user_meta_data)"
                    " VALUES (%s, %s, '{}') ON CONFLICT (id) DO NOTHING",
                    (user, f"soak{i}@example.com"),
                )
                break
            except psycopg.OperationalError:
                stats["insert_retries"] = stats.get("insert_retries", 0) + 1
                with contextlib.suppress(Exception):
                    conn and conn.close()
                conn = None
                time.sleep(0.1)
        out[user] = issued
        i += 1
    if conn is not None:
        conn.close()


def keep_killing(consumer: Consumer, plan: Plan, stop: threading.Event, recorder: Recorder) -> None:
    """SIGKILL and restart one consumer every ~`kill_every` seconds, staggered with the others."""
    offset = plan.kill_every * consumer.index / plan.consumers
    rng = random.Random(plan.seed * 100 + consumer.index)
    if stop.wait(offset):
        return
    while not stop.wait(plan.kill_every * rng.uniform(0.8, 1.2)):
        killed = time.time()
        consumer.kill()
        consumer.start()
        recorder.add("kill", killed, time.time())
        consumer.wait_ready(plan.kill_every)


def inflict(plan: Plan, prefect: PrefectServer, pgdata: Path, log_dir: Path,
            recorder: Recorder) -> tuple[float, float]:  # fmt: skip
    """The Prefect outage, then the PostgreSQL restarts; returns the outage's (begin, end)."""
    time.sleep(plan.warmup)
    begin = time.time()
    prefect.stop()
    time.sleep(plan.prefect_stop)
    prefect.start()
    end = time.time()
    recorder.add("prefect-stop", begin, end)
    if plan.prefect_freeze:
        frozen = time.time()
        prefect.signal(signal.SIGSTOP)
        time.sleep(plan.prefect_freeze)
        prefect.signal(signal.SIGCONT)
        end = time.time()
        recorder.add("prefect-freeze", frozen, end)
    for _ in range(plan.pg_restarts):
        time.sleep(plan.pg_gap)
        started = time.time()
        restart_postgres(pgdata, log_dir)
        recorder.add("pg-restart", started, time.time())
    time.sleep(plan.pg_gap)
    return begin, end


def drain(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.OperationalError), db.connect(url) as conn:
            if conn.execute("SELECT count(*) AS n FROM jobs.messages").fetchone()["n"] == 0:
                return
        time.sleep(0.5)


def collect(url: str, stub_url: str, users: dict) -> tuple[dict, dict, set, set, dict, dict]:
    with db.connect(url) as conn:
        keys = {
            r["key"]: r["message_id"]
            for r in conn.execute(
                "SELECT key, message_id FROM jobs.idempotency_keys WHERE key = ANY(%s)",
                ([f"welcome_email:{u}" for u in users],),
            )
        }
        dead = {r["id"] for r in conn.execute("SELECT id FROM jobs.dead_letters")}
        queued = {r["id"] for r in conn.execute("SELECT id FROM jobs.messages")}
        acked = {
            r["id"]: float(r["at"])
            for r in conn.execute(
                "SELECT id, extract(epoch FROM finalized_at) AS at FROM jobs.archive"
                " WHERE id = ANY(%s)",
                (list(keys.values()),),
            )
        }
    enqueued = {keys[f"welcome_email:{u}"]: at for u, at in users.items()}
    accepted: dict[int, list[float]] = {}
    answers: dict[str, int] = {}
    for row in httpx.get(f"{stub_url}/_stub/received", timeout=120).json():
        answers[str(row["status"])] = answers.get(str(row["status"]), 0) + 1
        if row["status"] < 300:
            accepted.setdefault(row["message_id"], []).append(row["at"])
    return enqueued, accepted, dead, queued, answers, acked


def seen_in_prefect(api_url: str, log_dir: Path) -> dict:
    """What the outage left: consumers that switched to delivering without Prefect and
    back (their logs), and the outage runs in Prefect (the counts of a consumer killed
    before Prefect came back are lost with it: they are kept in memory)."""
    logs = [p.read_text(errors="replace") for p in sorted(log_dir.glob("consumer-*.log"))]
    runs = httpx.post(
        f"{api_url}/flow_runs/filter",
        json={"flow_runs": {"name": {"like_": " outage "}}, "limit": 200},
        timeout=30,
    ).json()
    return {
        "consumers_started": len(logs),
        "switched_to_without_prefect": sum("delivering without Prefect" in t for t in logs),
        "switched_back": sum("Prefect API answers again" in t for t in logs),
        "outage_runs_in_prefect": len(runs),
    }


def soak(plan: Plan, log_dir: Path) -> dict:
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("consumer-*.log"):
        old.unlink()
    with scratch_postgres("taskflow-soak-") as (embedded, root):
        url = migrated_database(embedded, db.APP_DATABASE)
        db.ensure_database(embedded.url("postgres"), db.PREFECT_DATABASE)
        prefect = PrefectServer(root, embedded.asyncpg_url())
        consumers: list[Consumer] = []
        stop_killing, done = threading.Event(), threading.Event()
        try:
            with stand_in(
                net.free_port(), API_KEY, plan.faults, plan.seed, SENDGRID_TIMEOUT + 1, log_dir
            ) as stub_url:
                prefect.start()
                env = consumer_env(url, stub_url, prefect.api_url, root)
                for index in range(plan.consumers):
                    consumers.append(Consumer(index, env, log_dir))
                    consumers[-1].start()
                for consumer in consumers:
                    consumer.wait_ready(120)
                recorder, users, stats = Recorder(), {}, {}
                writer = threading.Thread(
                    target=write_signups, args=(url, plan, done, users, stats)
                )
                killers = [
                    threading.Thread(target=keep_killing, args=(c, plan, stop_killing, recorder))
                    for c in consumers
                ]
                writer.start()
                for killer in killers:
                    killer.start()
                try:
                    outage = inflict(plan, prefect, root / "pg", log_dir, recorder)
                finally:
                    done.set()
                    writer.join()
                    stop_killing.set()
                    for killer in killers:
                        killer.join()
                drain(url, plan.drain_timeout)
                enqueued, accepted, dead, queued, answers, acked = collect(url, stub_url, users)
                observed = seen_in_prefect(prefect.api_url, log_dir)
        finally:
            for consumer in consumers:
                consumer.kill()
            prefect.stop()
            db.stop_cluster(root / "pg")
    raw = {
        "enqueued": enqueued,
        "accepted": accepted,
        "acked": acked,
        "faults": [asdict(f) for f in recorder.faults],
    }
    (log_dir / "raw.json").write_text(json.dumps(raw))
    report = analyse(enqueued, accepted, dead, queued, recorder.faults, outage,
                     settle_bound=ACK_BOUND)  # fmt: skip
    ready = sorted(t for c in consumers for t in c.ready_after[1:])
    report["consumer_restart_to_consuming_s"] = {
        "median": round(ready[len(ready) // 2], 2) if ready else None,
        "max": round(ready[-1], 2) if ready else None,
    }
    # the window a kill re-sends in: accept -> the start of the ack's transaction
    report["ack_lag"] = ack_lag(accepted, acked)
    report["insert_retries"] = stats.get("insert_retries", 0)
    report["provider_answers"] = answers
    report["prefect"] = observed
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="the short version make test runs")
    parser.add_argument("--signups", type=int, help="at least this many signups")
    parser.add_argument("--rate", type=float, help="signups per second")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/taskflow-soak-logs"))
    args = parser.parse_args()
    plan = SMALL if args.small else Plan()
    if args.signups:
        plan = replace(plan, signups=args.signups)
    if args.rate:
        plan = replace(plan, rate=args.rate)
    report = soak(plan, args.logs)
    goals = {
        "lost_is_0": report["lost"] == 0 and report["still_queued"] == 0,
        "duplicates_at_most_0.1%": report["duplicate_rate"] <= 0.001,
        "duplicates_all_explained": report["duplicates_unexplained"] == 0,
        "p99_during_at_most_2x_before": (report["p99_ratio_during_vs_before"] or 99) <= 2,
    }
    print(json.dumps({"bench": "faults", "plan": asdict(plan), **report, "goals": goals}))


if __name__ == "__main__":
    main()
