"""The SendGrid stand-in for the benches, and the baselines that post to it directly.

`baseline`: the bodies posted by an httpx client configured like the SendGrid provider
(the issue's "same httpx client"). `transport_baseline`: the same bodies through the
provider's own connection pool and prebuilt request parts, as `SendGridProvider.send_one`
posts them, with no queue, database or Prefect: what is left of the gap to it is the
dispatcher's own work.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

API_KEY = "SG.bench-key"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def start_stub(port: int, log_dir: Path) -> subprocess.Popen:
    from taskflow_jobs.net import wait_for_http

    log = open(log_dir / "stub.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskflow_jobs.devstack.sendgrid_stub",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_http(f"http://127.0.0.1:{port}/_stub/received", 30, process)
    return process


def received(stub_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{stub_url}/_stub/received", timeout=120).json()


def clear(stub_url: str) -> None:
    httpx.delete(f"{stub_url}/_stub/received", timeout=30)


async def baseline(stub_url: str, bodies: list[dict[str, Any]], concurrency: int) -> float:
    """Emails/s posting `bodies` straight to the stub, as the SendGrid provider's client does
    (same headers, same limits, the same orjson encoding of each body)."""
    client = httpx.AsyncClient(
        timeout=30,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "User-Agent": "taskflow-jobs",
            "Content-Type": "application/json",
        },
    )
    limit = asyncio.Semaphore(concurrency)
    url = f"{stub_url}/v3/mail/send"

    async def post(body: dict[str, Any]) -> None:
        async with limit:
            response = await client.post(url, content=orjson.dumps(body))
            assert response.status_code == 202, response.status_code

    started = time.perf_counter()
    await asyncio.gather(*(post(b) for b in bodies))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return len(bodies) / elapsed


async def transport_baseline(
    stub_url: str, bodies: list[dict[str, Any]], concurrency: int
) -> float:
    """Emails/s posting `bodies` the way the SendGrid provider does (its pool, URL,
    headers and timeout), with the same concurrency and encoding."""
    from taskflow_jobs.email.providers.sendgrid import SendGridProvider

    provider = SendGridProvider(stub_url, API_KEY, concurrency=concurrency)
    limit = asyncio.Semaphore(concurrency)

    async def post(body: dict[str, Any]) -> None:
        async with limit:
            response = await provider.pool.request(
                "POST",
                provider._url,
                headers=provider._headers,
                content=orjson.dumps(body),
                extensions=provider._extensions,
            )
            assert response.status == 202, response.status

    started = time.perf_counter()
    await asyncio.gather(*(post(b) for b in bodies))
    elapsed = time.perf_counter() - started
    await provider.aclose()
    return len(bodies) / elapsed
