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


def test_all_proxy_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("all_proxy", "http://proxy.internal:3128")
    assert _proxy_for("https://api.sendgrid.com/v3/mail/send") == "http://proxy.internal:3128"


def test_proxy_credentials_and_a_missing_scheme_are_read_as_httpx_reads_them() -> None:
    from taskflow_jobs.email.providers.http import _proxy

    proxy = _proxy("user:secret@proxy.internal:3128")
    assert proxy.url.scheme == b"http"
    assert (proxy.url.host, proxy.url.port) == (b"proxy.internal", 3128)
    assert proxy.auth == (b"user", b"secret")
    assert _proxy("http://proxy.internal:3128").auth is None
