"""Every class of bad input is a 4xx with a JSON reason, and stores nothing."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

from taskflow_jobs.webhooks.auth import sign
from taskflow_jobs.webhooks.inputs import MAX_BODY_BYTES
from tests.support.receiver import SECRET, Receiver, nothing_stored

NOTE = {"type": "notification", "data": {"to": "a@example.com", "subject": "S", "body": "B"}}
USER = {
    "type": "INSERT",
    "table": "users",
    "schema": "auth",
    "record": {"id": "0b6f0c2e-8f7a-4c3e-9d6b-2f1a7c9e4d10", "email": "a@example.com"},
    "old_record": None,
}


def reason(response) -> str:  # noqa: ANN001
    body = response.json()
    assert body["error"], body
    return f"{body['error']}: {body.get('detail', '')}"


@pytest.mark.parametrize("path", ["/api/notify", "/webhooks/supabase", "/api/events/x.y"])
def test_malformed_json_is_400(receiver: Receiver, conn: psycopg.Connection, path: str) -> None:
    for raw in (
        b"{",
        b"{'a': 1}",
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
        b'{"a": NaN}',
        b'{"a": 1e999}',
        b'{"a": ' + b"9" * 5000 + b"}",
    ):
        response = receiver.post(path, raw)
        assert response.status_code == 400, (raw[:20], response.text)
        assert reason(response).startswith("malformed JSON")
    assert nothing_stored(conn)


@pytest.mark.parametrize("path", ["/api/notify", "/webhooks/supabase", "/api/events/x.y"])
def test_wrong_content_type_is_415(receiver: Receiver, conn: psycopg.Connection, path: str) -> None:
    body = json.dumps(NOTE).encode()
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/json; charset=latin-1",
        None,
    ):
        response = receiver.post(path, body, content_type=content_type)
        assert response.status_code == 415, (content_type, response.text)
        assert "Content-Type" in reason(response) or "UTF-8" in reason(response)
    gz = receiver.post(path, body, headers={"Content-Encoding": "gzip"})
    assert gz.status_code == 415
    assert nothing_stored(conn)


def test_json_variants_are_accepted(receiver: Receiver) -> None:
    for content_type in (
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.taskflow+json",
    ):
        body = {**NOTE, "data": {**NOTE["data"], "subject": content_type}}  # not a replay
        response = receiver.post("/api/notify", body, content_type=content_type)
        assert response.status_code == 202, (content_type, response.text)


def test_notify_field_errors_are_422_naming_the_field(
    receiver: Receiver, conn: psycopg.Connection
) -> None:
    cases = {
        "body must be a JSON object": [1, 2],
        "type: Field required": {"data": NOTE["data"]},
        "data: Field required": {"type": "notification"},
        "data: Input should be a valid dictionary": {"type": "notification", "data": "x"},
        "to: Extra inputs are not permitted": {**NOTE, "to": "a@example.com"},
        "data.to: value is not a valid email address": {
            "type": "notification",
            "data": {**NOTE["data"], "to": "not-an-email"},
        },
        "data.subject: Field required": {
            "type": "notification",
            "data": {"to": "a@example.com", "body": "B"},
        },
        "type: unknown message type 'sms'": {"type": "sms", "data": {}},
        "data.user_id: Input should be a valid UUID": {
            "type": "welcome_email",
            "data": {"user_id": "nope", "email": "a@example.com"},
        },
        "idempotency_key: String should match pattern": {**NOTE, "idempotency_key": "has space"},
    }
    for expected, body in cases.items():
        response = receiver.post("/api/notify", body)
        assert response.status_code == 422, (expected, response.text)
        assert expected in reason(response), (expected, reason(response))
    assert nothing_stored(conn)


def test_unpostgresable_text_is_422(receiver: Receiver, conn: psycopg.Connection) -> None:
    for raw in (
        b'{"type": "notification", "data": {"to": "a@example.com", "subject": "\\u0000",'
        b' "body": "B"}}',
        b'{"type": "notification", "data": {"x\\ud800": 1}}',
    ):
        response = receiver.post("/api/notify", raw)
        assert response.status_code == 422, response.text
    assert nothing_stored(conn)


def test_supabase_errors_are_422(receiver: Receiver, conn: psycopg.Connection) -> None:
    cases = {
        "unsupported table: public.projects": {**USER, "table": "projects", "schema": "public"},
        "unsupported table: auth.sessions": {**USER, "table": "sessions"},
        "type: Input should be 'INSERT', 'UPDATE' or 'DELETE'": {**USER, "type": "TRUNCATE"},
        "schema: Field required": {k: v for k, v in USER.items() if k != "schema"},
        "record: required for INSERT": {**USER, "record": None},
        "record.id: UUID input should be a string": {**USER, "record": {"id": 7}},
        "record.email: Input should be a valid string": {
            **USER,
            "record": {**USER["record"], "email": 5},
        },
        # the same address check as /api/notify: nothing is enqueued for a bad address
        "record.email: value is not a valid email address": {
            **USER,
            "record": {**USER["record"], "email": "not-an-address"},
        },
        "record.email: value is not a valid email address: Carriage return and line feed": {
            **USER,
            "record": {**USER["record"], "email": "ann@example.com\r\nBcc: x@evil.test"},
        },
        "record.assignee_id: Input should be a valid UUID": {
            "type": "UPDATE",
            "table": "tasks",
            "schema": "public",
            "record": {"id": 1, "title": "t", "assignee_id": "x"},
        },
        "record.assigned_at: required with an assignee": {
            "type": "INSERT",
            "table": "tasks",
            "schema": "public",
            "record": {"id": 1, "title": "t", "assignee_id": USER["record"]["id"]},
        },
        "record.id: Input should be a valid integer": {
            "type": "INSERT",
            "table": "tasks",
            "schema": "public",
            "record": {"id": "1", "title": "t"},
        },
    }
    for expected, body in cases.items():
        response = receiver.post("/webhooks/supabase", body)
        assert response.status_code == 422, (expected, response.text)
        assert expected in reason(response), (expected, reason(response))
    assert nothing_stored(conn)


def test_invalid_event_names_are_422(receiver: Receiver) -> None:
    for name in (
        "Report",
        "1report",
        "report..requested",
        "report.",
        ".report",
        "a" * 65,
        "report%20requested",
        "r%C3%A9port",
        "report.requested%00",
    ):
        response = receiver.post(f"/api/events/{name}", {})
        assert response.status_code == 422, (name, response.text)
        assert reason(response).startswith("invalid event name")
    for name in ("report.requested", "a", "a-b_c.d9"):
        # valid names get as far as Prefect, which this receiver has none of
        assert receiver.post(f"/api/events/{name}", {}).status_code == 503


def test_known_event_payloads_are_validated(receiver: Receiver) -> None:
    response = receiver.post("/api/events/report.requested", {"date": "yesterday"})
    assert response.status_code == 422
    assert "body.date: Input should be a valid date" in reason(response)
    response = receiver.post("/api/events/report.requested", [1])
    assert response.status_code == 422


def test_oversized_body_is_413(receiver: Receiver, conn: psycopg.Connection) -> None:
    big = {"type": "notification", "data": {**NOTE["data"], "body": "x" * MAX_BODY_BYTES}}
    response = receiver.post("/api/notify", big)
    assert response.status_code == 413
    assert "262144 bytes" in reason(response)
    # exactly at the limit is read (and judged on its content)
    at_limit = b" " * (MAX_BODY_BYTES - 2) + b"{}"
    assert receiver.post("/api/notify", at_limit).status_code == 422
    assert nothing_stored(conn)


def chunks(total: int, size: int = 16384) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        sent += part
        yield b" " * part


def test_oversized_body_without_content_length_is_413(receiver: Receiver) -> None:
    """Chunked transfer: the limit is enforced on the bytes received."""
    response = receiver.client.post(
        receiver.url + "/api/notify",
        content=chunks(MAX_BODY_BYTES * 4),
        headers={"Content-Type": "application/json", **sign(SECRET, b"whatever")},
    )
    assert response.status_code == 413
    assert "content-length" not in {k.lower() for k in response.request.headers}


def test_lying_content_length_is_413(receiver: Receiver) -> None:
    """A small Content-Length next to a huge chunked body cannot sneak past the limit."""
    host, port = urlsplit(receiver.url).hostname, urlsplit(receiver.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n"
        )
        try:
            for piece in chunks(MAX_BODY_BYTES * 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close early; the answer is already there
        answer = sock.recv(4096)
    status = answer.split(b"\r\n", 1)[0]
    # uvicorn's parser lets chunked win over Content-Length; the limit stops the body
    assert status.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"content-type: application/json" in answer.lower()


def test_unknown_routes_and_methods_are_json(receiver: Receiver) -> None:
    missing = receiver.post("/api/nothing", NOTE)
    assert missing.status_code == 404 and reason(missing).startswith("not found")
    wrong = receiver.get("/api/notify")
    assert wrong.status_code == 405 and reason(wrong).startswith("method not allowed")
    assert receiver.client.delete(receiver.url + "/healthz").status_code == 405


def test_ignored_supabase_changes_are_200(receiver: Receiver, conn: psycopg.Connection) -> None:
    task = {"id": 1, "title": "t", "assignee_id": None, "created_by": None}
    ignored = [
        {**USER, "type": "UPDATE", "old_record": USER["record"]},
        {**USER, "type": "DELETE", "record": None, "old_record": USER["record"]},
        {**USER, "record": {**USER["record"], "email": None}},
        {"type": "INSERT", "table": "tasks", "schema": "public", "record": task},
        {
            "type": "DELETE",
            "table": "tasks",
            "schema": "public",
            "record": None,
            "old_record": task,
        },
    ]
    for body in ignored:
        response = receiver.post("/webhooks/supabase", body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ignored"
    assert nothing_stored(conn)
