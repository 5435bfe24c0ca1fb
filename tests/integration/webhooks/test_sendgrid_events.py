"""POST /webhooks/sendgrid/events with a real ECDSA key pair generated here, signing
SendGrid-format batches exactly as SendGrid does (timestamp + raw body, P-256, SHA-256)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import EMAIL_QUEUE, SettingsError, load_settings
from taskflow_jobs.webhooks.sendgrid_events import SIGNATURE_HEADER, TIMESTAMP_HEADER
from tests.support.dispatch_helpers import drain
from tests.support.receiver import Receiver, running_receiver

PATH = "/webhooks/sendgrid/events"


def public_key_text(key: ec.EllipticCurvePrivateKey, pem: bool = False) -> str:
    """As SendGrid shows it: base64 of the DER SubjectPublicKeyInfo (or PEM)."""
    public = key.public_key()
    if pem:
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def signed(key: ec.EllipticCurvePrivateKey, body: bytes, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: stamp,
        "Content-Type": "application/json",
    }


def event(kind: str, address: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": address,
        "event": kind,
        "timestamp": int(time.time()),
        "sg_event_id": f"evt-{kind}-{address}",
        "sg_message_id": "abc.filter0001",
        "taskflow_message_id": "7",
        **extra,
    }


BATCH = [
    event(
        "bounce",
        "Gone@Example.com",
        type="bounce",
        bounce_classification="Invalid Address",
        reason="550 5.1.1 unknown user",
    ),  # fmt: skip
    event("dropped", "dropped@example.com", reason="Bounced Address"),
    event("spamreport", "angry@example.com"),
    event("unsubscribe", "leaver@example.com"),
    event("delivered", "fine@example.com"),
    event("bounce", "blocked@example.com", type="blocked", reason="451 try later"),
    event("open", "fine@example.com"),
]


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def events_rx(database_url: str, key: ec.EllipticCurvePrivateKey) -> Iterator[Receiver]:
    with running_receiver(database_url, sendgrid_webhook_public_key=public_key_text(key)) as rx:
        yield rx


def post(rx: Receiver, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return rx.client.post(rx.url + PATH, content=body, headers=headers)


def suppressions(conn: psycopg.Connection) -> dict[str, tuple[str, str]]:
    rows = conn.execute("SELECT email, reason, source FROM jobs.suppressions").fetchall()
    return {r["email"]: (r["reason"], r["source"]) for r in rows}


def test_a_signed_batch_suppresses_bounces_drops_complaints_and_unsubscribes(
    events_rx: Receiver,
    key: ec.EllipticCurvePrivateKey,
    conn: psycopg.Connection,
    database_url: str,
    data_dir: Path,
) -> None:
    body = json.dumps(BATCH).encode()
    answer = post(events_rx, body, signed(key, body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": "ok",
        "events": 7,
        "suppressed": 4,
        "already_suppressed": 0,
        "ignored": 3,
    }
    assert suppressions(conn) == {
        "gone@example.com": ("bounce (Invalid Address)", "sendgrid-events"),
        "dropped@example.com": ("dropped (Bounced Address)", "sendgrid-events"),
        "angry@example.com": ("spam report", "sendgrid-events"),
        "leaver@example.com": ("unsubscribe", "sendgrid-events"),
    }
    # SendGrid retries a batch it got no 2xx for: the same batch again changes nothing
    again = post(events_rx, body, signed(key, body))
    assert again.status_code == 200 and again.json()["already_suppressed"] == 4
    assert len(suppressions(conn)) == 4

    # and the next email to a suppressed address is skipped with the reason
    message = queue.send(
        conn,
        EMAIL_QUEUE,
        {"type": "notification", "to": "gone@example.com", "subject": "Hi", "body": "Hello"},
    )
    drain(load_settings(database_url=database_url, data_dir=data_dir))
    state = queue.message_state(conn, message)
    assert state is not None and state["state"] == "skipped"
    assert state["reason"] == "suppressed: bounce (Invalid Address) (via sendgrid-events)"


def test_the_key_may_be_given_as_pem(
    database_url: str, key: ec.EllipticCurvePrivateKey, conn: psycopg.Connection
) -> None:
    with running_receiver(
        database_url, sendgrid_webhook_public_key=public_key_text(key, pem=True)
    ) as rx:
        body = json.dumps([event("spamreport", "x@example.com")]).encode()
        assert post(rx, body, signed(key, body)).status_code == 200
    assert list(suppressions(conn)) == ["x@example.com"]


def test_bad_missing_or_stale_signatures_are_401_and_store_nothing(
    events_rx: Receiver, key: ec.EllipticCurvePrivateKey, conn: psycopg.Connection
) -> None:
    body = json.dumps(BATCH).encode()
    stranger = ec.generate_private_key(ec.SECP256R1())
    good = signed(key, body)
    cases = {
        "another key": signed(stranger, body),
        "no headers": {"Content-Type": "application/json"},
        "no timestamp": {k: v for k, v in good.items() if k != TIMESTAMP_HEADER},
        "no signature": {k: v for k, v in good.items() if k != SIGNATURE_HEADER},
        "signature not base64": {**good, SIGNATURE_HEADER: "not base64!"},
        "timestamp changed": {**good, TIMESTAMP_HEADER: str(int(good[TIMESTAMP_HEADER]) + 1)},
        "too old": signed(key, body, at=int(time.time()) - 3600),
        "from the future": signed(key, body, at=int(time.time()) + 3600),
        "timestamp not a number": {**good, TIMESTAMP_HEADER: "yesterday"},
    }
    for name, headers in cases.items():
        answer = post(events_rx, body, headers)
        assert answer.status_code == 401, (name, answer.text)
        assert answer.json()["error"] == "unauthorized"
    # one byte of the body changed after signing
    altered = body.replace(b"angry@", b"angrY@")
    assert post(events_rx, altered, good).status_code == 401
    assert suppressions(conn) == {}


def test_a_signed_body_that_is_not_an_event_array_is_400(
    events_rx: Receiver, key: ec.EllipticCurvePrivateKey, conn: psycopg.Connection
) -> None:
    for body in (
        b'{"event": "bounce"}',
        b"not json",
        b'[{"event": "bounce", "email": "\\u0000@x"}]',
    ):
        answer = post(events_rx, body, signed(key, body))
        if body.startswith(b"["):
            assert answer.status_code == 200 and answer.json()["ignored"] == 1
        else:
            assert answer.status_code == 400, answer.text
    assert suppressions(conn) == {}


def test_without_a_public_key_the_route_is_503_naming_the_setting(
    receiver: Receiver, key: ec.EllipticCurvePrivateKey
) -> None:
    body = b"[]"
    answer = post(receiver, body, signed(key, body))
    assert answer.status_code == 503
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in answer.json()["detail"]


def test_a_bad_public_key_setting_fails_at_startup(database_url: str) -> None:
    with (
        pytest.raises(SettingsError, match="SENDGRID_WEBHOOK_PUBLIC_KEY"),
        running_receiver(database_url, sendgrid_webhook_public_key="bm90IGEga2V5"),
    ):
        pass
