"""The fast path for plain addresses agrees with EmailStr: whatever it accepts, EmailStr
accepts too and returns unchanged (so skipping email_validator changes no result)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, TypeAdapter, ValidationError

from taskflow_jobs.email.messages import plain_email

FULL = TypeAdapter(EmailStr)

LOCAL = st.text(alphabet="aZ09._+-!#'`{}~%&*/=?^|\"\\ é", min_size=0, max_size=70)
DOMAIN = st.text(alphabet="az09.-AZé_", min_size=0, max_size=70)
TLDS = st.sampled_from(
    ["com", "co", "c", "io", "test", "local", "arpa", "x1", "1x", "123", "xn--p1ai"]
)


def agrees(address: str) -> None:
    if plain_email(address):
        try:
            assert FULL.validate_python(address) == address
        except ValidationError as exc:  # pragma: no cover - the failure being looked for
            pytest.fail(f"fast path accepted {address!r}, EmailStr refuses it: {exc}")


@settings(max_examples=3000, deadline=None)
@given(LOCAL, DOMAIN, TLDS)
@example("user", "example", "com")
@example("u", "x", "c")
@example("a" * 64, "example", "com")
@example("first.last+tag", "mail.example", "co")
def test_structured_addresses(local: str, domain: str, tld: str) -> None:
    agrees(f"{local}@{domain}.{tld}")


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet='ab.@-+_ZC9é"', max_size=40))
def test_arbitrary_strings(text: str) -> None:
    agrees(text)


@pytest.mark.parametrize(
    "address",
    [
        "a..b@x.com",
        ".a@x.com",
        "a.@x.com",
        "a@-x.com",
        "a@x-.com",
        "a@x.123",
        "a@x.test",
        "a@Example.com",
        "a@exa--mple.com",
        "a" * 65 + "@x.com",
        "a@" + "b" * 64 + ".com",
        "a b@x.com",
        "a@x",
        "ü@x.com",
        "a@ü.com",
        "Name <a@x.com>",
    ],  # fmt: skip
)
def test_anything_unusual_goes_to_email_validator(address: str) -> None:
    assert not plain_email(address)


def test_the_common_case_is_fast() -> None:
    assert plain_email("user1234@example.com")
    assert plain_email("first.last+tag@mail.example.co")
