"""deployments/nginx/prefect-api.conf, run by Debian's nginx under a temp prefix: the
compose stack's upstream names become loopback addresses, everything else is the file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.debian import NGINX, ensure_installed

CONF = Path(__file__).parents[2] / "deployments" / "nginx" / "prefect-api.conf"
_UPSTREAM = re.compile(r"^(\s*)server prefect-api-\d+:4200 (.*)$", re.MULTILINE)


def render(api_ports: list[int], listen_port: int, prefix: Path) -> Path:
    """An nginx.conf under `prefix` that includes the deployment's server configuration."""
    ensure_installed(NGINX)
    text = CONF.read_text()
    lines = _UPSTREAM.findall(text)
    assert lines, "no `server prefect-api-N:4200` line in the upstream block"
    indent, options = lines[0]
    servers = "".join(f"{indent}server 127.0.0.1:{p} {options}\n" for p in api_ports)
    text = _UPSTREAM.sub("", text).replace("least_conn;\n", "least_conn;\n" + servers, 1)
    text = re.sub(r"listen 4200;", f"listen 127.0.0.1:{listen_port};", text)
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    (prefix / "prefect-api.conf").write_text(text)
    main = prefix / "nginx.conf"
    main.write_text(
        f"daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/logs/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {prefix}/logs/access.log;\n"
        f"    client_body_temp_path {prefix}/tmp/body;\n"
        f"    proxy_temp_path {prefix}/tmp/proxy;\n"
        f"    fastcgi_temp_path {prefix}/tmp/fastcgi;\n"
        f"    uwsgi_temp_path {prefix}/tmp/uwsgi;\n"
        f"    scgi_temp_path {prefix}/tmp/scgi;\n"
        f"    include {prefix}/prefect-api.conf;\n"
        "}\n"
    )
    return main


def check(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(NGINX), "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def argv(conf: Path) -> list[str]:
    return [str(NGINX), "-p", str(conf.parent), "-c", str(conf)]
