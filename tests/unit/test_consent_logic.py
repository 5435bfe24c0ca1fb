"""Pure logic of recipients' consent: tokens, skip decisions, bounce classification, events."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskflow_jobs.email.consent import Consent, Recipient
from taskflow_jobs.email.providers.sendgrid import classify_response
from taskflow_jobs.email.providers.smtp import HARD_BOUNCE_CODES
from taskflow_jobs.email.unsubscribe import (
    TYPE_CODES,
    InvalidToken,
    UnsubscribeLinks,
    make_token,
    signing_key,
    verify_token,
)
from taskflow_jobs.settings import load_settings
from taskflow_jobs.webhooks.sendgrid_events import BadEvents, parse_events

KEY = b"unit-test-unsubscribe-key"
users = st.uuids()
kinds = st.sampled_from(sorted(TYPE_CODES))


@given(user=users, kind=kinds)
def test_a_token_names_exactly_its_user_and_type(user: uuid.UUID, kind: str) -> None:
    token = make_token(KEY, user, kind)
    assert len(token) == 44
    assert verify_token(KEY, token) == (user, kind)


@given(a=users, b=users, kind_a=kinds, kind_b=kinds)
def test_tokens_of_different_users_or_types_differ(
    a: uuid.UUID, b: uuid.UUID, kind_a: str, kind_b: str
) -> None:
    if (a, kind_a) != (b, kind_b):
        assert make_token(KEY, a, kind_a) != make_token(KEY, b, kind_b)


@given(user=users, kind=kinds, data=st.data())
def test_any_changed_character_is_refused(user: uuid.UUID, kind: str, data: st.DataObject) -> None:
    token = make_token(KEY, user, kind)
    position = data.draw(st.integers(0, len(token) - 1))
    other = data.draw(st.characters(codec="utf-8").filter(lambda c: c != token[position]))
    with pytest.raises(InvalidToken):
        verify_token(KEY, token[:position] + other + token[position + 1 :])


@given(user=users, kind=kinds, key=st.binary(min_size=1, max_size=64))
def test_another_key_is_refused(user: uuid.UUID, kind: str, key: bytes) -> None:
    if key != KEY:
        with pytest.raises(InvalidToken):
            verify_token(key, make_token(KEY, user, kind))


@given(text=st.text(max_size=100))
def test_arbitrary_text_is_refused_without_crashing(text: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(KEY, text)


def test_welcome_email_cannot_be_turned_off() -> None:
    with pytest.raises(ValueError, match="cannot be turned off"):
        make_token(KEY, uuid.uuid4(), "welcome_email")


def test_the_key_is_unsubscribe_secret_else_derived_from_webhook_secret() -> None:
    assert signing_key(load_settings(webhook_secret=None, unsubscribe_secret=None)) is None
    derived = signing_key(load_settings(webhook_secret="w-secret", unsubscribe_secret=None))
    assert derived is not None and b"w-secret" not in derived and len(derived) == 32
    own = signing_key(load_settings(webhook_secret="w-secret", unsubscribe_secret="u-secret"))
    assert own == b"u-secret"


def test_links_default_to_the_receivers_own_url() -> None:
    settings = load_settings(
        webhook_secret="w", webhook_host="0.0.0.0", webhook_port=9911, public_base_url=None
    )
    link = UnsubscribeLinks(settings).for_user(uuid.uuid4(), "task_assigned")
    assert link is not None and link.url.startswith("http://127.0.0.1:9911/unsubscribe/")
    assert link.headers() == (
        ("List-Unsubscribe", f"<{link.url}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    )
    assert UnsubscribeLinks(settings).for_user(uuid.uuid4(), "welcome_email") is None
    assert UnsubscribeLinks(load_settings(webhook_secret=None)).for_user(uuid.uuid4(), "x") is None


def test_skip_reasons() -> None:
    ann, bob = uuid.uuid4(), uuid.uuid4()
    consent = Consent(
        disabled={ann: frozenset({"task_assigned"})},
        suppressed={"gone@example.com": ("hard bounce (SMTP 550)", "smtp")},
        users={"ann@example.com": ann},
    )
    assert consent.skip_reason("task_assigned", Recipient(ann, "ann@example.com")) == (
        "opted out: the recipient turned off task_assigned emails"
    )
    assert consent.skip_reason("notification", Recipient(ann, "ann@example.com")) is None
    assert consent.skip_reason("task_assigned", Recipient(None, "ann@example.com")) is not None
    assert consent.skip_reason("task_assigned", Recipient(bob, "bob@example.com")) is None
    # welcome_email is transactional: no preference applies, but suppression does
    transactional = Consent(disabled={ann: frozenset({"welcome_email"})})
    assert transactional.skip_reason("welcome_email", Recipient(ann, "a@x.io")) is None
    assert consent.skip_reason("welcome_email", Recipient(bob, "gone@example.com")) == (
        "suppressed: hard bounce (SMTP 550) (via smtp)"
    )


def test_sendgrid_400_naming_the_recipient_is_a_hard_bounce() -> None:
    body = '{"errors": [{"message": "Invalid email", "field": "personalizations.0.to.0.email"}]}'
    result = classify_response(400, {}, body)
    assert result.bounce == "hard bounce (SendGrid refused the address)"
    other = '{"errors": [{"message": "bad subject", "field": "subject"}]}'
    assert classify_response(400, {}, other).bounce is None
    assert classify_response(500, {}, body).bounce is None
    assert {550, 551, 553} == HARD_BOUNCE_CODES


def test_event_parsing() -> None:
    batch = parse_events(
        b'[{"event": "bounce", "email": "A@B.io", "type": "bounce"},'
        b' {"event": "bounce", "email": "c@b.io", "type": "blocked"},'
        b' {"event": "unsubscribe", "email": "not an address"},'
        b' {"event": "spamreport"}, 3, {"event": "processed", "email": "d@b.io"}]'
    )
    assert batch.suppress == {"a@b.io": "bounce"}
    assert (batch.events, batch.ignored) == (6, 5)
    for body in (b"{}", b"nope", b'"[]"'):
        with pytest.raises(BadEvents):
            parse_events(body)
