"""A Python port of the case study's Edge Function `process-email-queue`, served over HTTP.

One invocation (any POST) does what the TypeScript function does:

    read up to 10 messages with a 60 s visibility timeout (pgmq.read, vt 60, qty 10)
    for each, one after the other:
        welcome_email / task_assigned -> POST SendGrid v3; 2xx -> pgmq.delete
        unknown type                  -> console.log, pgmq.delete
        failure                       -> console.error; if read_ct >= 3: pgmq.archive and a
                                         public.job_failures row; else leave it, so it is
                                         read again when its 60 s run out
    answer {"processed", "failed", "unknown"}

Supabase runs the function in Deno and reaches the database through supabase-js and
PostgREST; this port calls the same pgmq functions directly with psycopg (one connection
per invocation, as a fresh client per request is there). Logs go to stdout, which is what
the Supabase dashboard shows as function logs.

    python -m compare.supabase.edge_function --port N   (DATABASE_URL, SENDGRID_API_URL,
                                                          SENDGRID_API_KEY, EMAIL_FROM)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from taskflow_jobs.sql import parse_queries

QUERIES = parse_queries((Path(__file__).parent / "edge_function.sql").read_text())
VT_SECONDS = 60
QTY = 10
MAX_READS = 3


def log(*parts: object) -> None:
    print(*parts, flush=True)


class SendGridError(Exception):
    pass


def send_email(client: httpx.Client, to: str, subject: str, text: str, html: str) -> None:
    response = client.post(
        f"{os.environ['SENDGRID_API_URL']}/v3/mail/send",
        json={
            "personalizations": [{"to": [{"email": to}]}],
            "from": {"email": os.environ.get("EMAIL_FROM", "noreply@example.com")},
            "subject": subject,
            "content": [
                {"type": "text/plain", "value": text},
                {"type": "text/html", "value": html},
            ],
        },
        headers={"Authorization": f"Bearer {os.environ['SENDGRID_API_KEY']}"},
    )
    if response.status_code >= 300:
        raise SendGridError(f"SendGrid error: {response.status_code} {response.text[:200]}")


def handle(conn: psycopg.Connection, client: httpx.Client, message: dict[str, Any]) -> bool:
    """Send one job's email; False for a type this function does not know."""
    kind = message.get("type")
    if kind == "welcome_email":
        name = message.get("name") or "there"
        send_email(
            client,
            message["email"],
            "Welcome to TaskFlow!",
            f"Hi {name}, welcome to TaskFlow!",
            f"<h1>Welcome, {name}!</h1><p>Thanks for joining TaskFlow.</p>",
        )
        return True
    if kind == "task_assigned":
        row = conn.execute(
            "SELECT email, full_name FROM public.profiles WHERE id = %s",
            (message["assignee_id"],),
        ).fetchone()
        if row is None:
            raise ValueError(f"assignee {message['assignee_id']} has no profile")
        send_email(
            client,
            row["email"],
            f"New task assigned: {message['task_title']}",
            f"You have been assigned: {message['task_title']}",
            f"<p>You have been assigned: <b>{message['task_title']}</b></p>",
        )
        return True
    return False


def invoke(database_url: str, client: httpx.Client) -> dict[str, int]:
    """One invocation of the function: one read of up to QTY messages."""
    counts = {"processed": 0, "failed": 0, "unknown": 0}
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        messages = conn.execute(QUERIES["read"], {"vt": VT_SECONDS, "qty": QTY}).fetchall()
        for row in messages:
            message, msg_id = row["message"], row["msg_id"]
            try:
                if handle(conn, client, message):
                    counts["processed"] += 1
                else:
                    log(f"Unknown job type: {message.get('type')}")
                    counts["unknown"] += 1
                conn.execute(QUERIES["delete"], {"msg_id": msg_id})
            except Exception as exc:  # the TypeScript catch (error) catches everything too
                log(f"Error processing message {msg_id}: {exc}")
                counts["failed"] += 1
                if row["read_ct"] >= MAX_READS:
                    conn.execute(QUERIES["archive"], {"msg_id": msg_id})
                    conn.execute(
                        QUERIES["record_failure"],
                        {
                            "msg_id": msg_id,
                            "message": Jsonb(message),
                            "error": str(exc),
                            "read_ct": row["read_ct"],
                        },
                    )
    return counts


class Handler(BaseHTTPRequestHandler):
    server: FunctionServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self._answer(200, {"ok": True})  # the runtime's health check, not an invocation

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            self._answer(200, invoke(self.server.database_url, self.server.client))
        except Exception as exc:
            log(f"invocation failed: {exc}")
            self._answer(500, {"error": str(exc)})

    def _answer(self, status: int, result: dict[str, Any]) -> None:
        body = json.dumps(result).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class FunctionServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, database_url: str) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.database_url = database_url
        self.client = httpx.Client(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = FunctionServer(args.port, os.environ["DATABASE_URL"])
    log(f"edge function listening on {args.port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
