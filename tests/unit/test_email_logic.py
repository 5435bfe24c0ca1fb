"""Pure logic of email dispatch: backoff, Retry-After, rendering, provider classification."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from taskflow_jobs.backoff import RetryPolicy, exponential_ceiling, full_jitter, parse_retry_after
from taskflow_jobs.email.compose import Undeliverable, address, parse_sender
from taskflow_jobs.email.providers.base import SendStatus
from taskflow_jobs.email.providers.sendgrid import classify_response
from taskflow_jobs.email.providers.smtp import classify_reply
from taskflow_jobs.email.render import Renderer, TemplateProblem, single_line
from taskflow_jobs.settings import SettingsError


def test_exponential_ceiling_doubles_and_caps() -> None:
    assert [exponential_ceiling(a, 10, 100) for a in range(1, 6)] == [10, 20, 40, 80, 100]
    assert exponential_ceiling(10_000, 10, 3600) == 3600


def test_full_jitter_stays_within_zero_and_the_ceiling_and_spreads() -> None:
    rng = random.Random(7)
    delays = [full_jitter(3, 10, 3600, rng) for _ in range(2000)]
    assert all(0 <= d <= 40 for d in delays)
    assert min(delays) < 4 and max(delays) > 36, "full jitter uses the whole range"


def test_retry_after_is_a_floor_but_the_cap_still_holds() -> None:
    policy = RetryPolicy(base=1, cap=300, max_attempts=5)
    rng = random.Random(1)
    assert all(policy.delay(1, retry_after=120, rng=rng) >= 120 for _ in range(100))
    assert policy.delay(1, retry_after=86_400, rng=rng) == 300


def test_the_configured_limit_can_only_lower_a_messages_attempts() -> None:
    policy = RetryPolicy(base=1, cap=10, max_attempts=3)
    assert not policy.exhausted(2, message_max_attempts=5)
    assert policy.exhausted(3, message_max_attempts=5)
    assert policy.exhausted(2, message_max_attempts=2)


def test_parse_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("30") == 30
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (202, SendStatus.ACCEPTED),
        (400, SendStatus.PERMANENT),
        (413, SendStatus.PERMANENT),
        (401, SendStatus.UNAVAILABLE),
        (403, SendStatus.UNAVAILABLE),
        (408, SendStatus.TRANSIENT),
        (429, SendStatus.TRANSIENT),
        (500, SendStatus.TRANSIENT),
        (503, SendStatus.TRANSIENT),
    ],
)
def test_sendgrid_status_classification(status: int, expected: SendStatus) -> None:
    assert classify_response(status, {}, '{"errors": [{"message": "m"}]}').status is expected


def test_sendgrid_429_reads_retry_after_or_the_rate_limit_reset() -> None:
    assert classify_response(429, {"Retry-After": "17"}, "").retry_after == 17
    reset = classify_response(429, {"X-RateLimit-Reset": "1000"}, "", now=990)
    assert reset.retry_after == 10


def test_smtp_reply_classification() -> None:
    assert classify_reply(451, b"try later").status is SendStatus.TRANSIENT
    assert classify_reply(550, b"no such user").status is SendStatus.PERMANENT
    assert classify_reply(552, "mailbox full").error == "SMTP 552 mailbox full"


def test_single_line_removes_line_breaks_and_control_characters() -> None:
    assert single_line("Ann\r\nBcc: x@y.z") == "Ann Bcc: x@y.z"
    assert single_line("a\u2028b\x00c\td") == "a b c d"
    assert single_line("x" * 300, 10) == "x" * 9 + "…"
    assert single_line(None) == ""


def test_addresses_cannot_carry_headers() -> None:
    addr = address("ann@example.com", "Ann\r\nBcc: evil@example.com")
    assert "\n" not in str(addr) and addr.addr_spec == "ann@example.com"
    with pytest.raises(Undeliverable, match="invalid email address"):
        address("not-an-address")


def test_email_from_must_be_an_address_and_errors_name_the_setting() -> None:
    assert parse_sender("TaskFlow <noreply@example.com>").display_name == "TaskFlow"
    with pytest.raises(SettingsError, match="EMAIL_FROM"):
        parse_sender("TaskFlow")


def test_templates_escape_html_but_not_plain_text() -> None:
    rendered = Renderer().render(
        "welcome_email", {"name": "<script>alert(1)</script>", "email": "a@example.com"}
    )
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "Hi <script>alert(1)</script>," in rendered.text
    assert rendered.subject == "Welcome to TaskFlow, <script>alert(1)</script>!"


def test_a_missing_template_value_is_a_clear_error() -> None:
    with pytest.raises(TemplateProblem, match="'email' is undefined"):
        Renderer().render("welcome_email", {"name": "Ann"})
    with pytest.raises(TemplateProblem, match="not found"):
        Renderer().render("no_such_type", {})


def test_every_message_type_has_its_three_templates() -> None:
    from taskflow_jobs.email.messages import MESSAGE_TYPES
    from taskflow_jobs.email.render import TEMPLATES_DIR

    for kind in MESSAGE_TYPES:
        for suffix in (".subject.txt", ".txt", ".html"):
            assert (TEMPLATES_DIR / f"{kind}{suffix}").is_file(), f"{kind}{suffix}"
