"""Pure logic of the receiver's authentication, body parsing and payload planning."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest
from starlette.datastructures import Headers

from taskflow_jobs.webhooks.auth import Authenticator, Unauthorized, check_secret, sign, signature
from taskflow_jobs.webhooks.errors import ApiError
from taskflow_jobs.webhooks.inputs import parse_json
from taskflow_jobs.webhooks.payloads import (
    Ignored,
    TaskAssignment,
    WelcomeEmail,
    check_event_name,
    plan_notify,
    plan_supabase,
)

SECRET = "unit-secret-0123456789"
NOW = 1_700_000_000


def headers(values: dict[str, str]) -> Headers:
    return Headers(values)


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """What senders in other languages implement."""
    expected = hmac.new(b"secret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert signature("secret", 1700000000, b'{"a":1}') == expected
    assert sign("secret", b'{"a":1}', 1700000000) == {
        "X-Taskflow-Timestamp": "1700000000",
        "X-Taskflow-Signature": f"sha256={expected}",
    }


def test_signed_request_passes_and_yields_a_replay_key() -> None:
    auth = Authenticator([SECRET])
    body = b'{"x": 1}'
    caller = auth.authenticate(headers(sign(SECRET, body, NOW)), body, now=NOW + 10)
    assert caller.method == "signature"
    assert caller.replay_key and caller.replay_key.startswith("sig:")
    assert caller.expires_at == NOW + 300
    # the same message signed with another accepted secret is the same request
    rotated = Authenticator([SECRET, "previous-secret-0123456789"])
    other = rotated.authenticate(
        headers(sign("previous-secret-0123456789", body, NOW)), body, now=NOW
    )
    assert other.replay_key == caller.replay_key


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_timestamps_outside_the_window_fail(skew: int) -> None:
    auth = Authenticator([SECRET])
    with pytest.raises(Unauthorized, match="window"):
        auth.authenticate(headers(sign(SECRET, b"{}", NOW)), b"{}", now=NOW + skew)


def test_signature_header_may_list_several_and_case_does_not_matter() -> None:
    auth = Authenticator([SECRET])
    good = signature(SECRET, NOW, b"{}").upper()
    values = {"X-Taskflow-Timestamp": str(NOW), "X-Taskflow-Signature": f"sha256=00, SHA256={good}"}
    assert auth.authenticate(headers(values), b"{}", now=NOW).method == "signature"


def test_bearer_and_failures() -> None:
    auth = Authenticator([SECRET])
    assert auth.authenticate(headers({"Authorization": f"bearer {SECRET}"}), b"").method == "bearer"
    for value in ({}, {"Authorization": "Bearer nope"}, {"X-Taskflow-Signature": "sha256=ab"}):
        with pytest.raises(Unauthorized):
            auth.authenticate(headers(value), b"", now=NOW)


def test_no_secret_needs_insecure_dev() -> None:
    with pytest.raises(ValueError):
        Authenticator([])
    assert Authenticator([], insecure_dev=True).authenticate(headers({}), b"").method == (
        "insecure-dev"
    )
    # with a secret, insecure_dev changes nothing
    with pytest.raises(Unauthorized):
        Authenticator([SECRET], insecure_dev=True).authenticate(headers({}), b"")


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        check_secret("too-short")
    check_secret("x" * 16)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{", 400),
        (b"NaN", 400),
        (b"1e400", 400),
        (b"\xff", 400),
        (b"[" * 3000, 400),
        (b'"\\u0000"', 422),
        (b'{"\\ud800": 1}', 422),
        (b"[" * 40 + b"]" * 40, 422),
    ],
)
def test_json_that_postgres_cannot_hold_is_refused(raw: bytes, status: int) -> None:
    with pytest.raises(ApiError) as exc:
        parse_json(raw)
    assert exc.value.status == status


def test_event_names() -> None:
    for good in ("report.requested", "a", "x-y_z.w9"):
        assert check_event_name(good) == good
    for bad in ("", "A", "a..b", "a.", ".a", "a b", "a/b", "a" * 65, "é"):
        with pytest.raises(ApiError):
            check_event_name(bad)


USER_ID = str(uuid.uuid4())


def change(kind: str, table: str, record: dict | None, old: dict | None = None) -> dict:
    schema = "auth" if table == "users" else "public"
    return {"type": kind, "table": table, "schema": schema, "record": record, "old_record": old}


def test_supabase_plans_follow_the_triggers() -> None:
    user = {"id": USER_ID, "email": "a@example.com", "raw_user_meta_data": {"full_name": "A"}}
    assert isinstance(plan_supabase(change("INSERT", "users", user)), WelcomeEmail)
    assert isinstance(plan_supabase(change("UPDATE", "users", user, user)), Ignored)
    task = {
        "id": 1,
        "title": "t",
        "assignee_id": USER_ID,
        "created_by": None,
        "assigned_at": "2024-05-01T10:00:00.123456+00:00",
    }
    planned = plan_supabase(change("INSERT", "tasks", task))
    assert isinstance(planned, TaskAssignment)
    assert planned.assigned_at.microsecond == 123456
    same = change("UPDATE", "tasks", task, {"assignee_id": USER_ID})
    assert plan_supabase(same) == Ignored("the assignee did not change")
    # without old_record the change is enqueued: the key (assigned_at) keeps it idempotent
    assert isinstance(plan_supabase(change("UPDATE", "tasks", task)), TaskAssignment)


def test_notify_keys_are_namespaced_and_welcome_uses_the_trigger_key() -> None:
    note = {"type": "notification", "data": {"to": "a@example.com", "subject": "s", "body": "b"}}
    assert plan_notify(note, headers({})).idempotency_key is None
    assert plan_notify({**note, "idempotency_key": "k"}, headers({})).idempotency_key == "notify:k"
    keyed = plan_notify(note, headers({"webhook-id": "msg_1"}))
    assert keyed.idempotency_key == "notify:msg_1"
    welcome = {
        "type": "welcome_email",
        "data": {"user_id": USER_ID, "email": "a@example.com"},
        "idempotency_key": "ignored",
    }
    assert plan_notify(welcome, headers({})).idempotency_key == f"welcome_email:{USER_ID}"
