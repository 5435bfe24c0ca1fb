"""The SendGrid provider posts through its transport directly; the proxy the environment
names still applies, as it would with httpx's client."""

from __future__ import annotations

import pytest

from taskflow_jobs.email.providers.sendgrid import _proxy_for


def test_no_proxy_set_means_a_direct_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _proxy_for("https://api.sendgrid.com/v3/mail/send") is None


def test_https_proxy_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert _proxy_for("https://api.sendgrid.com/v3/mail/send") == "http://proxy.internal:3128"
    monkeypatch.setenv("no_proxy", "localhost,.sendgrid.com")
    assert _proxy_for("https://api.sendgrid.com/v3/mail/send") is None
