"""What invokes the Edge Function, in the two ways Supabase users run it.

- `--mode cron`: the pg_net stand-in. pg_cron's `process-email-queue` job calls
  `net.http_post` once a minute, which queues a request row; this relay sends each queued
  request (fire and forget, the row's timeout), as pg_net's background worker does.
- `--mode poll --interval S`: a polling loop. It invokes the function, invokes it again
  at once while a read came back full (10 messages), and otherwise waits S seconds. A
  failed invocation (the function crashed, or is starting) waits S seconds too.

    python -m compare.supabase.invoker --mode cron|poll --function-url URL [--interval 1]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import httpx
import psycopg

from compare.supabase.edge_function import QTY

TAKE_REQUESTS = """
DELETE FROM net.http_request_queue
WHERE id IN (SELECT id FROM net.http_request_queue ORDER BY id FOR UPDATE SKIP LOCKED)
RETURNING id, url, body, timeout_milliseconds
"""


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def relay(database_url: str) -> None:
    """Send every request `net.http_post` queues; the response is not read by anyone."""

    def post(url: str, body: object, timeout_ms: int, request_id: int) -> None:
        try:
            response = httpx.post(url, json=body, timeout=timeout_ms / 1000)
            log(f"net request {request_id}: {response.status_code}")
        except httpx.HTTPError as exc:
            log(f"net request {request_id} failed: {exc!r}")

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("LISTEN net_http_request")
        while True:
            for request_id, url, body, timeout_ms in conn.execute(TAKE_REQUESTS).fetchall():
                threading.Thread(
                    target=post, args=(url, body, timeout_ms, request_id), daemon=True
                ).start()
            for _ in conn.notifies(timeout=1.0, stop_after=1):
                pass


def poll(function_url: str, interval: float) -> None:
    with httpx.Client(timeout=120) as client:
        while True:
            try:
                result = client.post(function_url, json={"source": "poller"}).json()
            except (httpx.HTTPError, ValueError) as exc:
                log(f"invocation failed: {exc!r}")
                time.sleep(interval)
                continue
            if sum(result.get(k, 0) for k in ("processed", "failed", "unknown")) < QTY:
                time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("cron", "poll"), required=True)
    parser.add_argument("--function-url", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    if args.mode == "cron":
        relay(os.environ["DATABASE_URL"])
    else:
        poll(args.function_url, args.interval)


if __name__ == "__main__":
    main()
