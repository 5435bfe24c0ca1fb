"""Authentication over real HTTP: signed, unsigned, badly signed, replayed, expired, bearer."""

from __future__ import annotations

import json
import time

import psycopg

from taskflow_jobs import net
from taskflow_jobs.webhooks.auth import signature
from tests.support.receiver import SECRET, Receiver, count, running_receiver

NOTE = {
    "type": "notification",
    "data": {"to": "ada@example.com", "subject": "Hello", "body": "Hi Ada"},
}


def unauthorized(response) -> bool:  # noqa: ANN001
    body = response.json()
    return response.status_code == 401 and body["error"] == "unauthorized" and "detail" not in body


def jobs(conn: psycopg.Connection) -> int:
    return count(conn, "SELECT count(*) FROM jobs.messages")


def test_signed_request_is_accepted_after_commit(receiver: Receiver, conn) -> None:  # noqa: ANN001
    response = receiver.post("/api/notify", NOTE)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted" and answer["duplicate"] is False
    row = conn.execute(
        "SELECT payload FROM jobs.messages WHERE id = %s", (answer["job_id"],)
    ).fetchone()
    assert row["payload"] == {"type": "notification", **NOTE["data"]}
    assert response.headers["x-request-id"]


def test_unsigned_request_is_refused_and_stores_nothing(receiver: Receiver, conn) -> None:  # noqa: ANN001
    response = receiver.post("/api/notify", NOTE, signed=False)
    assert unauthorized(response)
    assert jobs(conn) == 0


def test_bad_signatures_are_refused(receiver: Receiver, conn) -> None:  # noqa: ANN001
    body = json.dumps(NOTE).encode()
    ts = str(int(time.time()))
    wrong_key = signature("another-secret-0123456789", ts, body)
    other_body = signature(SECRET, ts, body + b" ")
    other_ts = signature(SECRET, str(int(ts) - 1), body)
    for value in (
        f"sha256={wrong_key}",
        f"sha256={other_body}",
        f"sha256={other_ts}",
        "sha256=",
        "md5=" + signature(SECRET, ts, body),
        "garbage",
    ):
        headers = {"X-Taskflow-Timestamp": ts, "X-Taskflow-Signature": value}
        response = receiver.post("/api/notify", body, signed=False, headers=headers)
        assert unauthorized(response), value
    # right signature, malformed or missing timestamp
    good = f"sha256={signature(SECRET, ts, body)}"
    for ts_value in ("", "abc", f"{ts}.5", "-1"):
        headers = {"X-Taskflow-Timestamp": ts_value, "X-Taskflow-Signature": good}
        assert unauthorized(receiver.post("/api/notify", body, signed=False, headers=headers))
    assert unauthorized(
        receiver.post("/api/notify", body, signed=False, headers={"X-Taskflow-Signature": good})
    )
    assert jobs(conn) == 0


def test_expired_and_future_timestamps_are_refused(receiver: Receiver, conn) -> None:  # noqa: ANN001
    now = int(time.time())
    assert unauthorized(receiver.post("/api/notify", NOTE, timestamp=now - 301))
    assert unauthorized(receiver.post("/api/notify", NOTE, timestamp=now + 301))
    assert receiver.post("/api/notify", NOTE, timestamp=now - 240).status_code == 202
    assert jobs(conn) == 1


def test_replayed_request_is_refused(receiver: Receiver, conn) -> None:  # noqa: ANN001
    body = json.dumps(NOTE).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Taskflow-Timestamp": ts,
        "X-Taskflow-Signature": f"sha256={signature(SECRET, ts, body)}",
    }
    first = receiver.client.post(receiver.url + "/api/notify", content=body, headers=headers)
    assert first.status_code == 202
    again = receiver.client.post(receiver.url + "/api/notify", content=body, headers=headers)
    assert unauthorized(again)
    assert jobs(conn) == 1
    # a fresh signature of the same body is a new request (no idempotency key: a new job)
    assert receiver.post("/api/notify", NOTE, timestamp=int(ts) + 1).status_code == 202
    assert jobs(conn) == 2


def test_bearer_token_is_accepted_and_a_wrong_one_is_not(receiver: Receiver, conn) -> None:  # noqa: ANN001
    ok = receiver.post(
        "/api/notify", NOTE, signed=False, headers={"Authorization": f"Bearer {SECRET}"}
    )
    assert ok.status_code == 202
    for value in (f"Bearer {SECRET}x", "Bearer", f"Basic {SECRET}", SECRET, f"Bearer{SECRET}"):
        response = receiver.post(
            "/api/notify", NOTE, signed=False, headers={"Authorization": value}
        )
        assert unauthorized(response), value
    assert jobs(conn) == 1


def test_previous_secret_is_accepted_during_rotation(database_url: str, conn) -> None:  # noqa: ANN001
    old = "the-old-secret-0123456789"
    with running_receiver(database_url, webhook_secret_previous=old) as rx:
        now = int(time.time())  # once: the same timestamp and body would be a replay
        assert rx.post("/api/notify", NOTE, timestamp=now).status_code == 202  # current secret
        rx.secret = old
        assert rx.post("/api/notify", NOTE, timestamp=now - 1).status_code == 202
        rx.secret = "never-configured-0123456789"
        assert unauthorized(rx.post("/api/notify", NOTE, timestamp=now - 2))
    assert jobs(conn) == 2


def test_insecure_dev_accepts_unauthenticated_requests(database_url: str, conn) -> None:  # noqa: ANN001
    with running_receiver(database_url, webhook_secret=None) as rx:
        assert rx.post("/api/notify", NOTE, signed=False).status_code == 202
    assert jobs(conn) == 1


def test_auth_is_checked_before_the_body_is_judged(receiver: Receiver) -> None:
    response = receiver.post("/api/notify", b"{not json", signed=False, content_type="text/plain")
    assert unauthorized(response)


def test_replaying_a_keyed_request_returns_the_original_answer(receiver: Receiver, conn) -> None:  # noqa: ANN001
    """Keyed work is harmless to repeat, so a sender that resends the same signed bytes after
    a lost answer gets the same job back instead of a 401."""
    body = json.dumps({**NOTE, "idempotency_key": "order-17-shipped"}).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Taskflow-Timestamp": ts,
        "X-Taskflow-Signature": f"sha256={signature(SECRET, ts, body)}",
    }
    first = receiver.client.post(receiver.url + "/api/notify", content=body, headers=headers)
    again = receiver.client.post(receiver.url + "/api/notify", content=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["job_id"] == first.json()["job_id"]
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert jobs(conn) == 1


def test_a_valid_request_replayed_to_another_route_is_refused(database_url: str) -> None:
    """The signed bytes of a valid /api/notify request replayed to /api/events/..., where
    they are a valid body too (any JSON object is an event payload): refused as a replay
    (401) before anything is emitted (Prefect is unreachable here, so an emit would 503)."""
    nowhere = f"http://127.0.0.1:{net.free_port()}/api"
    with running_receiver(database_url, prefect_api_url=nowhere) as rx:
        body = json.dumps(NOTE).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Taskflow-Timestamp": ts,
            "X-Taskflow-Signature": f"sha256={signature(SECRET, ts, body)}",
        }
        first = rx.client.post(rx.url + "/api/notify", content=body, headers=headers)
        assert first.status_code == 202, first.text
        fresh = rx.post("/api/events/report.requested", NOTE, timestamp=int(ts) + 1)
        assert fresh.status_code == 503, "the same body, freshly signed, gets past auth"
        again = rx.client.post(
            rx.url + "/api/events/report.requested", content=body, headers=headers
        )
        assert unauthorized(again), (again.status_code, again.text)
