"""The production manifests in deployments/, checked statically (no Docker engine,
Kubernetes cluster or Grafana here): the compose file through Debian's docker-compose
`config` (the Compose specification's schema, interpolation, anchors), the nginx
configuration through `nginx -t`, the Dockerfile against the repository, the Kubernetes
base job template through Prefect's own work-pool validation and templating."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from prefect.server.schemas.actions import WorkPoolCreate
from prefect.utilities.templating import apply_values

from taskflow_jobs.cli import app as cli_app
from tests.support import nginx
from tests.support.debian import DOCKER_COMPOSE, ensure_installed

ROOT = Path(__file__).parents[2]
DEPLOYMENTS = ROOT / "deployments"
COMPOSE = DEPLOYMENTS / "compose.yaml"
REDIS_SETTINGS = {
    "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
    "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
    "PREFECT_REDIS_MESSAGING_HOST": "redis",
}
SECRETS = {"POSTGRES_PASSWORD": "pw-for-the-check", "WEBHOOK_SECRET": "secret-for-the-check"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    ensure_installed(DOCKER_COMPOSE)
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [str(DOCKER_COMPOSE), "--project-directory", str(DEPLOYMENTS), "-f", str(COMPOSE),
         "config"],
        env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def commands() -> set[str]:
    names = {c.name or c.callback.__name__ for c in cli_app.registered_commands}
    return names | {g.name for g in cli_app.registered_groups}


def test_compose_file_is_valid_and_is_the_ha_stack() -> None:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {
        "postgres", "redis", "prefect-migrate", "prefect-api-1", "prefect-api-2",
        "prefect-services", "nginx", "taskflow-deploy", "worker", "consumer-1", "consumer-2",
        "receiver",
    }  # fmt: skip
    for name in ("prefect-api-1", "prefect-api-2"):
        assert services[name]["command"][-1] == "--no-services"
    assert services["prefect-services"]["command"] == ["prefect", "server", "services", "start"]
    for name in ("prefect-migrate", "prefect-api-1", "prefect-api-2", "prefect-services"):
        env = services[name]["environment"]
        assert {k: env[k] for k in REDIS_SETTINGS} == REDIS_SETTINGS
        assert env["PREFECT_SERVER_DOCKET_URL"].startswith("redis://redis:6379/")
        assert env["PREFECT_API_DATABASE_MIGRATE_ON_START"] == "false"
    for name in ("worker", "consumer-1", "consumer-2", "receiver", "taskflow-deploy"):
        env = services[name]["environment"]
        assert env["PREFECT_API_URL"] == "http://nginx:4200/api", name
        assert SECRETS["POSTGRES_PASSWORD"] in env["DATABASE_URL"]
    for name in ("consumer-1", "consumer-2", "receiver"):
        assert services[name]["command"][0] == "taskflow-jobs"
        assert services[name]["command"][1] in commands()
    assert services["receiver"]["environment"]["WEBHOOK_SECRET"] == SECRETS["WEBHOOK_SECRET"]


def test_compose_refuses_to_start_without_the_passwords() -> None:
    result = compose_config({})
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_nginx_configuration_passes_nginx_t(tmp_path: Path) -> None:
    conf = nginx.render([4201, 4202], 4299, tmp_path)
    result = nginx.check(conf)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    broken = tmp_path / "prefect-api.conf"
    broken.write_text(broken.read_text().replace("least_conn;", "least_conn"))
    assert nginx.check(conf).returncode != 0  # the check can fail


def test_dockerfile_copies_what_exists_and_runs_our_commands() -> None:
    text = (DEPLOYMENTS / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    copies = [line.split()[1:-1] for line in instructions if line.startswith("COPY ")]
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    base = re.search(r"^FROM python:(\d+)\.(\d+)", text, re.MULTILINE)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert base and requires == ">=3.11" and (int(base[1]), int(base[2])) >= (3, 11)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)[1])
    assert cmd[0] == "taskflow-jobs" and cmd[1] in commands()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".data" in ignored


def test_kubernetes_base_job_template_is_a_valid_work_pool_template() -> None:
    template = json.loads((DEPLOYMENTS / "kubernetes" / "base-job-template.json").read_text())
    # the server's own validation of a work pool's template: every placeholder declared
    WorkPoolCreate(name="taskflow-jobs-k8s", type="kubernetes", base_job_template=template)
    jsonschema.Draft202012Validator.check_schema(template["variables"])
    defaults = {
        k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v
    }
    values = {**defaults, "name": "run-1", "command": "prefect flow-run execute", "labels": {}}
    job = apply_values(template["job_configuration"], values)["job_manifest"]
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == defaults["image"]
    assert container["envFrom"] == [{"secretRef": {"name": "taskflow-jobs-env"}}]
    assert not re.search(r"\{\{.*\}\}", json.dumps(job)), "a placeholder left unfilled"


def test_kubernetes_manifests_and_helm_values_parse_and_run_our_commands() -> None:
    docs = list(yaml.safe_load_all((DEPLOYMENTS / "kubernetes" / "taskflow-jobs.yaml").open()))
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert kinds == [
        ("Deployment", "taskflow-consume"),
        ("Deployment", "taskflow-receiver"),
        ("Service", "taskflow-receiver"),
    ]
    for doc in docs[:2]:
        spec = doc["spec"]
        assert (
            spec["selector"]["matchLabels"].items()
            <= spec["template"]["metadata"]["labels"].items()
        )
        (container,) = spec["template"]["spec"]["containers"]
        assert container["args"][0] == "taskflow-jobs" and container["args"][1] in commands()
    values = yaml.safe_load((DEPLOYMENTS / "kubernetes" / "worker-values.yaml").read_text())
    worker = values["worker"]
    assert worker["apiConfig"] == "server" and worker["serverApiConfig"]["apiUrl"].endswith("/api")
    assert worker["config"]["type"] == "kubernetes"
    assert set(worker["config"]["baseJobTemplate"]) == {"configuration"}


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client on this machine")
def test_docker_client_has_no_compose_plugin_here() -> None:
    """Documents why Debian's docker-compose does the compose check: if this starts failing,
    `docker compose config` can do it instead."""
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    assert result.returncode != 0
