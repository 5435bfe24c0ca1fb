"""The whole system on one machine: what `taskflow-jobs up` (`make run`) and `demo` start.

Embedded PostgreSQL (unless DATABASE_URL) → migrations → a Prefect server on the same
cluster → work pool, blocks, deployments and automations (`taskflow-jobs deploy`) → a
process worker, the `consume` consumer and the webhook receiver as child processes. The
children get the database URL and the Prefect API in their environment; Ctrl-C (or
SIGTERM) stops them all, newest first, and then the database.
"""

from __future__ import annotations

import secrets
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.deploy import deploy
from flows.daily_stats import run_name_for as daily_stats_run_name
from taskflow_jobs import db, errors, net
from taskflow_jobs.devstack import processes, seed
from taskflow_jobs.monitoring import backlog
from taskflow_jobs.monitoring.prefect_api import DAILY_STATS, WORK_POOL
from taskflow_jobs.settings import Settings

WORKER_POLL_SECONDS = 5


@dataclass
class Stack:
    """What is running and where."""

    settings: Settings
    database_url: str
    prefect_api_url: str
    prefect_env: dict[str, str]
    embedded: db.EmbeddedPostgres | None
    supervisor: processes.Supervisor
    webhook_url: str | None = None
    webhook_secret_file: Path | None = None
    deploy_lines: list[str] = field(default_factory=list)

    @property
    def ui_url(self) -> str:
        return self.prefect_api_url.removesuffix("/api")

    @property
    def outbox(self) -> Path:
        return self.settings.data_dir.resolve() / "outbox"

    def child_env(self) -> dict[str, str]:
        """Environment of every child: where the database, Prefect and the data live."""
        env = {
            k: v
            for k, v in self.prefect_env.items()
            if k != "PREFECT_SERVER_DATABASE_CONNECTION_URL"
        }
        settings = self.settings
        slack = settings.slack_webhook_url
        env.update(
            {
                # what this process decided overrides what the shell said
                "DATABASE_URL": self.database_url,
                "TASKFLOW_DATA_DIR": str(settings.data_dir.resolve()),
                "EMAIL_PROVIDER": settings.email_provider.value,
                "SLACK_WEBHOOK_URL": slack.get_secret_value() if slack else "",
                "WEBHOOK_HOST": settings.webhook_host,
                "WEBHOOK_PORT": str(settings.webhook_port),
                "TASKFLOW_PREFECT_PORT": str(settings.prefect_port),
                # library log lines join the flow runs' logs; outside runs they stay local
                "PREFECT_LOGGING_EXTRA_LOGGERS": "taskflow_jobs",
                "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
                # the consumer signs unsubscribe links with the key the receiver checks
                "UNSUBSCRIBE_SECRET": unsubscribe_secret(settings),
            }
        )
        return env


def unsubscribe_secret(settings: Settings) -> str:
    """UNSUBSCRIBE_SECRET, or a random one kept under the data directory (local development)."""
    if settings.unsubscribe_secret:
        return settings.unsubscribe_secret.get_secret_value()
    path = settings.data_dir.resolve() / "unsubscribe-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def prefect_database_url(settings: Settings, embedded: db.EmbeddedPostgres | None) -> str:
    """asyncpg URL of the `prefect` database next to the app database."""
    if embedded is not None:
        return embedded.asyncpg_url(db.PREFECT_DATABASE)
    parts = urlsplit(settings.database_url or "")
    db.ensure_database(parts._replace(path="/postgres").geturl(), db.PREFECT_DATABASE)
    return parts._replace(scheme="postgresql+asyncpg", path=f"/{db.PREFECT_DATABASE}").geturl()


def check_ports(settings: Settings, prefect_port: int, webhooks: bool) -> None:
    """Before starting anything: every port we will listen on is free (else name the setting)."""
    net.check_port_free("127.0.0.1", prefect_port, "the Prefect server", "TASKFLOW_PREFECT_PORT")
    if webhooks:
        net.check_port_free(
            settings.webhook_host, settings.webhook_port, "the webhook receiver", "WEBHOOK_PORT"
        )


def start_stack(
    settings: Settings,
    supervisor: processes.Supervisor,
    *,
    prefect_port: int | None = None,
    echo: Callable[[str], None] = print,
) -> Stack:
    """Embedded Postgres (unless DATABASE_URL), migrations, and a Prefect server on Postgres."""
    embedded = None if settings.database_url else db.start_embedded(settings)
    url = embedded.url() if embedded else db.database_url(settings)
    applied = db.migrate(url)
    echo(f"database ready ({len(applied)} migration(s) applied)")
    port = prefect_port or settings.prefect_port
    prefect_env = processes.prefect_server_env(
        settings.data_dir.resolve() / "prefect",
        prefect_database_url(settings, embedded),
        port,
        run_retention_days=settings.run_retention_days,
        event_retention_days=settings.event_retention_days,
    )
    echo(f"starting the Prefect server on port {port} (about 15 s)…")
    processes.start_prefect_server(supervisor, prefect_env)
    settings = settings.model_copy(update={"database_url": url, "prefect_port": port})
    return Stack(settings, url, prefect_env["PREFECT_API_URL"], prefect_env, embedded, supervisor)


def webhook_secret(stack: Stack) -> str:
    """WEBHOOK_SECRET, or a random one kept under the data directory (local development)."""
    if stack.settings.webhook_secret:
        return stack.settings.webhook_secret.get_secret_value()
    path = stack.settings.data_dir.resolve() / "webhook-secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    stack.webhook_secret_file = path
    return path.read_text().strip()


def deploy_everything(stack: Stack, echo: Callable[[str], None]) -> None:
    """Work pool, blocks (written from this environment), deployments, automations."""
    deploy(stack.settings, api=stack.prefect_api_url, overwrite_blocks=True, echo=echo)


def start_worker(stack: Stack) -> processes.Child:
    env = {
        **stack.child_env(),
        "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_POLL_SECONDS),
    }
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL,
            "--type", "process"]  # fmt: skip
    return stack.supervisor.start("worker", argv, env)


def taskflow_jobs_argv(*args: str) -> list[str]:
    """This installation's own `taskflow-jobs` command (next to its Python)."""
    return [str(Path(sys.executable).parent / "taskflow-jobs"), *args]


def start_consumer(stack: Stack) -> processes.Child:
    return stack.supervisor.start("consumer", taskflow_jobs_argv("consume"), stack.child_env())


def start_receiver(stack: Stack) -> processes.Child:
    env = {**stack.child_env(), "WEBHOOK_SECRET": webhook_secret(stack)}
    child = stack.supervisor.start("webhooks", taskflow_jobs_argv("webhooks"), env)
    host, port = stack.settings.webhook_host, stack.settings.webhook_port
    stack.webhook_url = f"http://{host}:{port}"
    net.wait_for_http(f"{stack.webhook_url}/healthz", 60, child.process, child.log_path)
    return child


def prune_backlog(stack: Stack, echo: Callable[[str], None]) -> list[backlog.Pruned]:
    """Before the worker starts: the cron runs that fell due while the system was stopped
    are deleted but the newest (the receiver goes on doing it while it runs)."""
    with temporary_settings(updates={PREFECT_API_URL: stack.prefect_api_url}):
        pruned = backlog.prune()
    for done in pruned:
        echo(done.line())
    return pruned


def report_run(stack: Stack, name: str) -> Any:
    """The daily-stats run named `name`: the scheduled one that fell due while the system
    was stopped (renamed now, so its name is decided before it starts), else a new one."""
    with (
        temporary_settings(updates={PREFECT_API_URL: stack.prefect_api_url}),
        get_client(sync_client=True) as client,
    ):
        due = backlog.newest_due(client, f"{DAILY_STATS}/{DAILY_STATS}")
        if due is not None:
            client.update_flow_run(due, name=name)
            return client.read_flow_run(due)
    return request_run(stack, f"{DAILY_STATS}/{DAILY_STATS}", name=name)


def wait_for_worker(api_url: str, supervisor: processes.Supervisor, timeout: float = 60) -> None:
    """Until a worker polls the `taskflow-jobs` pool; fail early if any child exits."""

    deadline = time.monotonic() + timeout
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        while time.monotonic() < deadline:
            if client.read_workers_for_work_pool(WORK_POOL):
                return
            dead = supervisor.exited()
            if dead:
                raise errors.StartupError(
                    f"{dead[0].name} exited with {dead[0].process.returncode}; "
                    f"see its log {dead[0].log_path}"
                )
            time.sleep(0.5)
    raise errors.StartupError(f"no worker polled the work pool within {timeout:.0f}s")


def request_run(
    stack: Stack, deployment: str, parameters: dict[str, Any] | None = None, *, name: str
) -> Any:
    """Schedule a run of `deployment` now (the worker picks it up), named `name` from the
    start: the name printed here is the one the UI shows; returns the flow run."""
    with temporary_settings(updates={PREFECT_API_URL: stack.prefect_api_url}):
        return run_deployment(
            deployment, parameters=parameters or {}, timeout=0, flow_run_name=name
        )


def start_system(
    settings: Settings,
    supervisor: processes.Supervisor,
    *,
    prefect_port: int | None = None,
    echo: Callable[[str], None] = print,
) -> Stack:
    """Everything, in order; each step fails with a message naming what went wrong."""
    check_ports(settings, prefect_port or settings.prefect_port, webhooks=True)
    stack = start_stack(settings, supervisor, prefect_port=prefect_port, echo=echo)
    echo("deploying: work pool, blocks, deployments, automations…")
    deploy_everything(stack, lambda line: stack.deploy_lines.append(line))
    prune_backlog(stack, echo)
    echo("starting the worker, the email consumer and the webhook receiver…")
    start_worker(stack)
    start_consumer(stack)
    start_receiver(stack)
    wait_for_worker(stack.prefect_api_url, supervisor)
    return stack


STOP_SECONDS = 4.0  # children get this long after SIGTERM, then SIGKILL
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stopping_on_signals() -> Any:
    """SIGINT and SIGTERM both stop everything, however `up` was started: a shell script
    or a service manager may start it with SIGINT ignored, which Python then keeps."""

    def _stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def banner(stack: Stack) -> list[str]:
    where = "embedded PostgreSQL" if stack.embedded else "DATABASE_URL"
    secret = (
        f"in {stack.webhook_secret_file}" if stack.webhook_secret_file else "from WEBHOOK_SECRET"
    )
    provider = stack.settings.email_provider.value
    emails = f"{stack.outbox} (.eml files)" if provider == "console" else f"sent with {provider}"
    return [
        "",
        "taskflow-jobs is running",
        f"  Prefect UI      {stack.ui_url}",
        f"  webhooks        {stack.webhook_url}  (HMAC secret {secret})",
        f"  emails          {emails}",
        f"  database        {db.redact_url(stack.database_url)} ({where})",
        f"  logs            {stack.supervisor.log_dir}",
        "  status          taskflow-jobs status",
        "Press Ctrl-C to stop everything.",
    ]


def run_up(settings: Settings, *, prefect_port: int | None = None) -> None:
    """`make run`: start everything, seed demo data on the first run, wait for Ctrl-C."""

    supervisor = processes.Supervisor(settings.data_dir.resolve() / "logs")
    with stopping_on_signals():
        try:
            print("starting taskflow-jobs (Ctrl-C stops everything)…", flush=True)
            stack = start_system(settings, supervisor, prefect_port=prefect_port)
            seeded = seed.seed_if_empty(stack.database_url)
            if seeded:
                print(f"demo data: {seeded}", flush=True)
            name = daily_stats_run_name(None, settings.timezone)
            run = report_run(stack, name)
            print(f"daily-stats report requested: run {run.name!r} (see the UI)", flush=True)
            print("\n".join(banner(stack)), flush=True)
            watch(supervisor)
        except KeyboardInterrupt:
            print("\nstopping…", flush=True)
        finally:
            stop_all(
                supervisor, None if settings.database_url else settings.data_dir.resolve() / "pg"
            )
            print("stopped.", flush=True)


def stop_all(supervisor: processes.Supervisor, pgdata: Path | None) -> None:
    """Stop every child, then the embedded PostgreSQL by its data directory (it may have
    been restarted from outside, under another PID). A second signal kills at once."""
    hurry = False

    def _now(_signum: int, _frame: object) -> None:
        nonlocal hurry
        hurry = True
        supervisor.kill()

    previous = {sig: signal.signal(sig, _now) for sig in STOP_SIGNALS}
    # an `up` that started nothing (its ports were taken: another `up` runs on this data
    # directory) must leave that one's cluster alone
    started_children = bool(supervisor.children)
    try:
        supervisor.stop(STOP_SECONDS)
        if pgdata is not None and started_children:
            db.stop_cluster(pgdata, immediate=hurry)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def watch(supervisor: processes.Supervisor) -> None:
    """Until interrupted: a child that dies stops the whole system, naming its log."""
    while True:
        dead = supervisor.exited()
        if dead:
            names = ", ".join(
                f"{c.name} (exit {c.process.returncode}; log {c.log_path})" for c in dead
            )
            raise SystemExit(f"error: a component stopped unexpectedly: {names}")
        time.sleep(1)
