"""`taskflow-jobs deploy`: work pool, blocks and variable, then `prefect deploy --all`.

`prefect deploy` refuses a work pool that does not exist, and the flows read their
settings from blocks, so both are created first. The deployments themselves are
declared in `prefect.yaml` only; this module just runs Prefect's own command on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.variables import Variable

from blocks import BlockNames
from deployments.automations import apply_for
from deployments.blocks import register_blocks
from taskflow_jobs.errors import DeployError
from taskflow_jobs.monitoring.prefect_api import (
    WORK_POOL,
    WORK_POOL_TYPE,
    Deployment,
    list_deployments,
)
from taskflow_jobs.settings import Settings

PROJECT_DIR_VARIABLE = "taskflow_project_dir"


def project_dir() -> Path:
    """The checkout holding prefect.yaml and flows/ (this package's parent directory)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "prefect.yaml").is_file():
        raise DeployError(
            f"prefect.yaml not found in {root}: run `taskflow-jobs deploy` from a checkout "
            "of taskflow-jobs (pip install -e .)"
        )
    return root


def api_url() -> str:

    url = PREFECT_API_URL.value()
    if not url:
        raise DeployError(
            "PREFECT_API_URL is not set: start the system with `taskflow-jobs up` (or `make "
            "run`), or point PREFECT_API_URL at your Prefect server, e.g. "
            "http://127.0.0.1:4200/api"
        )
    return url.rstrip("/")


def check_api(url: str, timeout: float = 5.0) -> None:
    """Fail with a clear message unless the Prefect API answers its health check."""
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        raise DeployError(
            f"the Prefect API at {url} is unreachable ({type(exc).__name__}): start it with "
            "`taskflow-jobs up` or set PREFECT_API_URL to a running server"
        ) from None
    if not response.is_success:
        raise DeployError(
            f"the Prefect API at {url} answered {response.status_code} to its health check"
        )


def ensure_work_pool(name: str = WORK_POOL) -> bool:
    """Create the process work pool unless it exists; True when it was created."""

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type=WORK_POOL_TYPE))
            except ObjectAlreadyExists:  # created meanwhile by another deploy
                return False
            return True
    if pool.type != WORK_POOL_TYPE:
        raise DeployError(
            f"work pool {name!r} exists with type {pool.type!r}; the deployments need a "
            f"{WORK_POOL_TYPE!r} pool (delete it or rename yours)"
        )
    return False


def set_project_dir(path: Path) -> None:
    """Where workers run the flows from (the pull step reads this variable)."""

    Variable.set(PROJECT_DIR_VARIABLE, str(path), overwrite=True)


def run_prefect_deploy(project: Path, api: str, timeout: float = 600) -> str:
    argv = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    env = {**os.environ, "PREFECT_API_URL": api}
    try:
        done = subprocess.run(
            argv, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise DeployError(f"`prefect deploy --all` did not finish within {timeout:.0f} s") from None
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise DeployError(f"`prefect --no-prompt deploy --all` failed:\n{tail}")
    return output


@dataclass
class DeployResult:
    api_url: str
    work_pool_created: bool
    blocks: dict[str, str] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)


def deploy(
    settings: Settings,
    *,
    api: str | None = None,
    overwrite_blocks: bool = False,
    echo: Callable[[str], None] = print,
) -> DeployResult:
    """Everything `taskflow-jobs deploy` does, in order; raises DeployError on the way.

    `api` overrides PREFECT_API_URL (`taskflow-jobs up` passes the server it started).
    """
    if api:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            return _deploy(settings, overwrite_blocks, echo)
    return _deploy(settings, overwrite_blocks, echo)


def _deploy(
    settings: Settings, overwrite_blocks: bool, echo: Callable[[str], None]
) -> DeployResult:

    project = project_dir()
    api = api_url()
    check_api(api)
    created = ensure_work_pool()
    echo(f"work pool {WORK_POOL!r}: {'created' if created else 'exists'}")
    outcome = register_blocks(settings, overwrite=overwrite_blocks)
    for name, what in outcome.items():
        echo(f"block {name}: {what}")
    set_project_dir(project)
    echo(f"variable {PROJECT_DIR_VARIABLE} = {project}")
    echo("running `prefect --no-prompt deploy --all` …")
    run_prefect_deploy(project, api)

    for name, what in apply_for(settings, BlockNames(settings.block_prefix).alerts).items():
        echo(f"automation {name!r}: {what}")
    return DeployResult(api, created, outcome, list_deployments())
