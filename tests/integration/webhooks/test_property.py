"""Property: whatever arrives (bodies, headers, names, methods), the receiver never answers
5xx while its database and Prefect are up, and every answer is JSON that says what happened.

Requests are mostly signed correctly, so they get past authentication and exercise the
parsing and validation behind it; bodies are random bytes, random JSON, and JSON shaped
like each route's input with random values in the fields.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from taskflow_jobs.webhooks.auth import sign, signature
from tests.support.receiver import SECRET, Receiver, running_receiver

# WEBHOOK_FUZZ_EXAMPLES=2000 for a longer hunt; the suite stays fast with the default
PROFILE = settings(
    max_examples=int(os.environ.get("WEBHOOK_FUZZ_EXAMPLES", "120")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "",
            "\x00",
            "\ud800",
            "a@example.com",
            str(uuid.uuid4()),
            "2024-05-01T10:00:00+00:00",
            "2024-05-01",
            "x" * 600,
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(st.uuids().map(str), st.integers(), printable, st.none())


def shaped(fields: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with some of `fields` (each a strategy), plus maybe a stray key."""
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=1).map(
            lambda extra: {**extra, **d}
        )
    )


user_record = shaped({"id": ids, "email": scalars, "raw_user_meta_data": json_values})
task_record = shaped(
    {
        "id": st.one_of(st.integers(min_value=-(2**63), max_value=2**63), ids),
        "title": scalars,
        "assignee_id": ids,
        "created_by": ids,
        "assigned_at": st.one_of(st.datetimes().map(lambda d: d.isoformat() + "+00:00"), scalars),
    }
)
supabase_bodies = shaped(
    {
        "type": st.sampled_from(["INSERT", "UPDATE", "DELETE", "insert", "TRUNCATE"]),
        "table": st.sampled_from(["users", "tasks", "projects", ""]),
        "schema": st.sampled_from(["auth", "public", "storage"]),
        "record": st.one_of(user_record, task_record, json_values),
        "old_record": st.one_of(user_record, task_record, st.none()),
    }
)
notify_bodies = shaped(
    {
        "type": st.sampled_from(["notification", "welcome_email", "task_assigned", "sms", ""]),
        "data": st.one_of(
            shaped(
                {
                    "to": scalars,
                    "subject": scalars,
                    "body": scalars,
                    "action_url": scalars,
                    "user_id": ids,
                    "email": scalars,
                    "name": scalars,
                    "task_id": ids,
                    "task_title": scalars,
                    "assignee_id": ids,
                    "type": scalars,
                }
            ),
            json_values,
        ),
        "idempotency_key": st.one_of(printable, st.none(), st.integers()),
    }
)
event_names = st.one_of(
    st.sampled_from(["report.requested", "email.enqueued", "a", "x-y_z.w9"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40).map(
        lambda s: quote(s, safe="")
    ),
)


def encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(encode),
    supabase_bodies.map(encode),
    notify_bodies.map(encode),
    st.sampled_from([b"", b"{}", b"[]", b"null", b'{"a":', b"\xff"]),
)
content_types = st.one_of(  # (h11 refuses values with outer whitespace: stripped)
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/json; charset=latin-1",
            "application/x+json",
            "",
        ]
    ),
    printable.map(str.strip),
)
header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True).filter(
    lambda n: (
        n.lower()
        not in {
            "content-length",
            "transfer-encoding",
            "host",
            "connection",
            "content-type",
            "expect",
            "upgrade",
            "te",
            "trailer",
        }
    )
)
extra_headers = st.dictionaries(
    st.one_of(
        st.sampled_from(
            ["Idempotency-Key", "webhook-id", "X-Delivery-Id", "Content-Encoding", "Authorization"]
        ),
        header_names,
    ),
    printable.map(str.strip),
    max_size=3,
)
auth_modes = st.sampled_from(["signed", "signed", "signed", "bearer", "none", "bad", "stale"])


def credentials(mode: str, body: bytes) -> dict[str, str]:
    now = int(time.time())
    if mode == "signed":
        return sign(SECRET, body)
    if mode == "bearer":
        return {"Authorization": f"Bearer {SECRET}"}
    if mode == "bad":
        return {"X-Taskflow-Timestamp": str(now), "X-Taskflow-Signature": "sha256=" + "0" * 64}
    if mode == "stale":
        ts = now - 3600
        return {
            "X-Taskflow-Timestamp": str(ts),
            "X-Taskflow-Signature": f"sha256={signature(SECRET, ts, body)}",
        }
    return {}


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    answer = response.json()
    event(f"{response.status_code} {answer.get('error', answer.get('status'))}")
    assert isinstance(answer, dict)
    if response.status_code >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
    else:
        assert answer["status"] in ("accepted", "ignored", "ok", "degraded"), answer


@pytest.fixture(scope="module")
def live(module_database_url: str, prefect_api_url: str) -> Iterator[Receiver]:
    with running_receiver(module_database_url, prefect_api_url=prefect_api_url) as rx:
        yield rx


@PROFILE
@given(
    route=st.one_of(
        st.sampled_from(["/webhooks/supabase", "/api/notify"]),
        event_names.map(lambda n: f"/api/events/{n}"),
    ),
    body=bodies,
    content_type=content_types,
    mode=auth_modes,
    headers=extra_headers,
)
def test_post_never_5xx(
    live: Receiver,
    route: str,
    body: bytes,
    content_type: str,
    mode: str,
    headers: dict[str, str],
) -> None:
    sent = {"Content-Type": content_type, **credentials(mode, body), **headers}
    if mode == "bearer" and "Authorization" in headers:
        sent["Authorization"] = f"Bearer {SECRET}"
    check(live.client.post(live.url + route, content=body, headers=sent))


def valid_bodies() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Requests each route accepts, with fresh ids so they are new jobs."""
    users = st.builds(
        lambda uid, name, kind: (
            "/webhooks/supabase",
            {
                "type": kind,
                "table": "users",
                "schema": "auth",
                "old_record": None,
                "record": {
                    "id": str(uid),
                    "email": f"u{uid.hex[:8]}@example.com",
                    "raw_user_meta_data": {"full_name": name},
                },
            },
        ),
        st.uuids(),
        st.text(max_size=20),
        st.sampled_from(["INSERT", "UPDATE"]),
    )
    tasks = st.builds(
        lambda task, who, old, when: (
            "/webhooks/supabase",
            {
                "type": "UPDATE",
                "table": "tasks",
                "schema": "public",
                "record": {
                    "id": task,
                    "title": "T",
                    "assignee_id": str(who),
                    "created_by": None,
                    "assigned_at": when.isoformat() + "+00:00",
                },
                "old_record": {"id": task, "assignee_id": old},
            },
        ),
        st.integers(min_value=1, max_value=2**62),
        st.uuids(),
        st.one_of(st.none(), st.uuids().map(str)),
        st.datetimes(),
    )
    notes = st.builds(
        lambda subject, key: (
            "/api/notify",
            {
                "type": "notification",
                "idempotency_key": key,
                "data": {"to": "a@example.com", "subject": subject or "s", "body": "b"},
            },
        ),
        st.text(max_size=30),
        st.one_of(st.none(), st.uuids().map(str)),
    )
    reports = st.builds(
        lambda day: ("/api/events/report.requested", {"date": day}),
        st.one_of(st.dates().map(str), st.none()),
    )
    return st.one_of(users, tasks, notes, reports)


def mutate(route_body: tuple[str, dict[str, Any]]) -> st.SearchStrategy[tuple[str, dict]]:
    """The body as is, or with one field (top level or one level down) replaced or removed."""
    route, body = route_body
    paths = [(k,) for k in body] + [
        (k, j) for k, v in body.items() if isinstance(v, dict) for j in v
    ]

    def apply(path: tuple[str, ...], value: Any, remove: bool) -> tuple[str, dict]:
        copy = json.loads(json.dumps(body))
        target = copy
        for key in path[:-1]:
            target = target[key]
        if remove:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
        return route, copy

    changed = st.builds(apply, st.sampled_from(paths), json_values, st.booleans())
    return st.one_of(st.just(route_body), changed)


@PROFILE
@given(request=valid_bodies().flatmap(mutate))
def test_nearly_valid_bodies_never_5xx(live: Receiver, request: tuple[str, dict]) -> None:
    route, body = request
    raw = encode(body)
    headers = {"Content-Type": "application/json", **sign(SECRET, raw)}
    check(live.client.post(live.url + route, content=raw, headers=headers))


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.one_of(
        st.sampled_from(
            ["/healthz", "/api/notify", "/webhooks/supabase", "/", "/api/events/report.requested"]
        ),
        printable.map(lambda s: "/" + quote(s)),
    ),
)
def test_other_methods_and_paths_never_5xx(live: Receiver, method: str, path: str) -> None:
    response = live.client.request(method, live.url + path)
    assert response.status_code < 500, (method, path, response.status_code)
    if method != "HEAD":
        check(response)
