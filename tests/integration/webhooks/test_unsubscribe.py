"""One-click unsubscribe through real HTTP requests to the receiver, from the link in a
real `.eml` to the next email being skipped; hypothesis properties on the routes."""

from __future__ import annotations

import email
import re
import uuid
from collections.abc import Iterator
from email import policy
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskflow_jobs import db
from taskflow_jobs.email.unsubscribe import TYPE_CODES, make_token, signing_key
from taskflow_jobs.jobs import queue
from taskflow_jobs.settings import load_settings
from tests.support.dispatch_helpers import drain, signup
from tests.support.receiver import SECRET, Receiver, running_receiver

KEY = signing_key(load_settings(webhook_secret=SECRET)) or b""  # the receiver's derived key
TOKEN_URL = re.compile(r"<(http://[^>]+/unsubscribe/[A-Za-z0-9_-]{44})>")


def preferences(conn: psycopg.Connection) -> list[tuple]:
    rows = conn.execute(
        "SELECT user_id, type, enabled FROM public.notification_preferences ORDER BY 1, 2"
    ).fetchall()
    return [(r["user_id"], r["type"], r["enabled"]) for r in rows]


def assign(conn: psycopg.Connection, title: str, assignee: str, by: str) -> int:
    conn.execute(
        "INSERT INTO public.tasks (title, created_by, assignee_id) VALUES (%s, %s, %s)",
        (title, by, assignee),
    )
    return conn.execute(
        "SELECT max(id) AS id FROM jobs.messages WHERE payload ->> 'type' = 'task_assigned'"
    ).fetchone()["id"]


def outbox_emails(data_dir: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for p in sorted((data_dir / "outbox").glob("*.eml"))
    ]


def test_click_the_link_in_the_eml_then_the_next_task_email_is_skipped(
    receiver: Receiver, conn: psycopg.Connection, database_url: str, data_dir: Path
) -> None:
    ann, _ = signup(conn, "ann@example.com", "Ann")
    bob, _ = signup(conn, "bob@example.com", "Bob")
    assign(conn, "First task", bob, ann)
    dispatch = load_settings(
        database_url=database_url,
        data_dir=data_dir,
        webhook_secret=SECRET,
        public_base_url=receiver.url,
    )
    assert drain(dispatch).summary()["sent"] == 3

    (task_email,) = [m for m in outbox_emails(data_dir) if "First task" in str(m["Subject"])]
    assert task_email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = TOKEN_URL.search(task_email["List-Unsubscribe"]).group(1)
    assert url.startswith(receiver.url + "/unsubscribe/")
    assert url in task_email.get_body(("html",)).get_content()

    page = receiver.client.get(url)  # a link preview or a scanner: nothing changes
    assert page.status_code == 200 and 'method="post"' in page.text
    assert "task assignment emails" in page.text
    assert preferences(conn) == []

    one_click = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = receiver.client.post(url, content=b"List-Unsubscribe=One-Click", headers=one_click)
    assert answer.status_code == 200
    assert answer.json() == {"status": "unsubscribed", "type": "task_assigned"}
    again = receiver.client.post(url, content=b"List-Unsubscribe=One-Click", headers=one_click)
    assert again.status_code == 200  # idempotent
    assert preferences(conn) == [(uuid.UUID(bob), "task_assigned", False)]
    browser = receiver.client.post(url, headers={"Accept": "text/html"})  # the page's button
    assert browser.status_code == 200 and "no longer receive" in browser.text

    second = assign(conn, "Second task", bob, ann)
    to_ann = assign(conn, "Ann's task", ann, bob)  # others still get theirs
    stats = drain(dispatch)
    assert stats.summary()["skipped"] == 1 and stats.summary()["sent"] == 1
    skipped = queue.message_state(conn, second)
    assert skipped is not None and skipped["state"] == "skipped"
    assert skipped["reason"] == "opted out: the recipient turned off task_assigned emails"
    assert queue.message_state(conn, to_ann)["state"] == "archived"  # type: ignore[index]
    assert not any("Second task" in str(m["Subject"]) for m in outbox_emails(data_dir))


def test_bad_tokens_are_400_with_a_reason_and_change_nothing(
    receiver: Receiver, conn: psycopg.Connection
) -> None:
    user, _ = signup(conn, "u@example.com")
    good = make_token(KEY, uuid.UUID(user), "notification")
    other_key = make_token(b"another key", uuid.UUID(user), "notification")
    for token in ("nope", good[:-1], good + "A", other_key, good.upper()):
        for method in ("GET", "POST"):
            answer = receiver.client.request(method, f"{receiver.url}/unsubscribe/{token}")
            assert answer.status_code == 400, (method, token, answer.text)
            assert answer.json()["error"] == "invalid unsubscribe link"
    assert preferences(conn) == []


def test_without_any_secret_the_routes_say_what_to_set(database_url: str) -> None:
    with running_receiver(database_url, webhook_secret=None) as rx:
        answer = rx.client.post(f"{rx.url}/unsubscribe/{'A' * 44}")
    assert answer.status_code == 503
    assert "UNSUBSCRIBE_SECRET" in answer.json()["detail"]


# --- properties, on one receiver and database per module -----------------------------------


USERS = 4


@pytest.fixture(scope="module")
def property_rx(module_database_url: str) -> Iterator[tuple[Receiver, list[uuid.UUID]]]:
    with db.connect(module_database_url, autocommit=True) as conn:
        users = [uuid.UUID(signup(conn, f"p{i}@example.com")[0]) for i in range(USERS)]
    with running_receiver(module_database_url) as rx:
        yield rx, users


def _snapshot(url: str) -> list[tuple]:
    with db.connect(url, autocommit=True) as conn:
        return preferences(conn)


def _reset(url: str) -> None:
    with db.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM public.notification_preferences")


PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
kinds = st.sampled_from(sorted(TYPE_CODES))


@PROPERTY
@given(owner=st.integers(0, USERS - 1), kind=kinds)
def test_a_token_for_one_user_never_unsubscribes_another(
    property_rx: tuple[Receiver, list[uuid.UUID]], owner: int, kind: str
) -> None:
    rx, users = property_rx
    _reset(rx.database_url)
    token = make_token(KEY, users[owner], kind)
    assert rx.client.post(f"{rx.url}/unsubscribe/{token}").status_code == 200
    assert _snapshot(rx.database_url) == [(users[owner], kind, False)]


@PROPERTY
@given(owner=st.integers(0, USERS - 1), kind=kinds, data=st.data())
def test_a_changed_character_is_always_refused(
    property_rx: tuple[Receiver, list[uuid.UUID]], owner: int, kind: str, data: st.DataObject
) -> None:
    rx, users = property_rx
    _reset(rx.database_url)
    token = make_token(KEY, users[owner], kind)
    position = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = data.draw(st.sampled_from(alphabet.replace(token[position], "")))
    altered = token[:position] + replacement + token[position + 1 :]
    answer = rx.client.post(f"{rx.url}/unsubscribe/{altered}")
    assert answer.status_code == 400
    assert _snapshot(rx.database_url) == []


@PROPERTY
@given(choice=st.one_of(st.tuples(st.integers(0, USERS - 1), kinds), st.text(max_size=80)))
def test_get_never_changes_state(
    property_rx: tuple[Receiver, list[uuid.UUID]], choice: tuple[int, str] | str
) -> None:
    rx, users = property_rx
    _reset(rx.database_url)
    token = choice if isinstance(choice, str) else make_token(KEY, users[choice[0]], choice[1])
    answer = rx.client.get(f"{rx.url}/unsubscribe/{quote(token, safe='')}")
    assert answer.status_code in (200, 400, 404), answer.text
    assert _snapshot(rx.database_url) == []
