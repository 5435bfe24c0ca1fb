"""SendGrid v3 Web API: POST `{SENDGRID_API_URL}/v3/mail/send`, 202 = accepted.

One connection pool per dispatcher (httpcore, the pool under httpx's client: `http.py`),
with at most SENDGRID_CONCURRENCY requests in flight across all batches. The URL, the
headers and the timeout are built once per dispatcher, and the client layer's per-request
work (URL merging, cookie jar, auth and redirect flows, none of which a JSON API call
needs) is skipped; a proxy from HTTPS_PROXY/NO_PROXY is honoured as the client would. The API key
only ever travels in the Authorization header; errors are built from status codes and
SendGrid's error messages, never from headers.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import orjson

from taskflow_jobs.backoff import parse_retry_after
from taskflow_jobs.email.compose import MESSAGE_ID_HEADER, OutgoingEmail
from taskflow_jobs.email.providers.base import ConcurrentSession, SendResult, concurrent_session
from taskflow_jobs.email.providers.http import (
    CONNECT_ERRORS,
    REQUEST_ERRORS,
    TIMEOUTS,
    connection_pool,
)
from taskflow_jobs.email.providers.limit import LaneLimit
from taskflow_jobs.jobs.ratelimit import UNLIMITED, ProviderThrottle

SEND_PATH = "/v3/mail/send"
ACCEPTED = SendResult.accepted()
# a 400 naming this field refuses the recipient's address (a hard bounce at send time)
_RECIPIENT_FIELD = re.compile(r"personalizations\.\d+\.to\.\d+\.email")


def _address(addr: Any) -> dict[str, str]:
    entry = {"email": addr.addr_spec}
    if addr.display_name:
        entry["name"] = addr.display_name
    return entry


def request_body(item: OutgoingEmail, sender: dict[str, str] | None = None) -> dict[str, Any]:
    """The v3 mail/send JSON for one email (text/plain must come before text/html).

    `sender`: the `from` object, when the caller built it once for every email."""
    return {
        "personalizations": [{"to": [_address(item.recipient)]}],
        "from": sender or _address(item.sender),
        "subject": item.subject,
        "content": [
            {"type": "text/plain", "value": item.text},
            {"type": "text/html", "value": item.html},
        ],
        "headers": {MESSAGE_ID_HEADER: str(item.message_id), **dict(item.headers)},
        "custom_args": {"taskflow_message_id": str(item.message_id), "type": item.message_type},
    }


def _error_details(body: str) -> str:
    """SendGrid's `errors[].message` (and field), or the start of the body."""
    try:
        errors = json.loads(body).get("errors") or []
        parts = [
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in errors
            if isinstance(e, dict)
        ]
        text = "; ".join(parts)
    except (ValueError, AttributeError):
        text = body.strip()
    return text[:300]


def _refuses_recipient(body: str) -> bool:
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return any(
        isinstance(e, dict) and _RECIPIENT_FIELD.fullmatch(str(e.get("field") or ""))
        for e in errors
    )


def classify_response(
    status: int, headers: httpx.Headers | dict[str, str], body: str, now: float | None = None
) -> SendResult:
    """What a SendGrid answer means for the message (pure; unit-tested)."""
    headers = httpx.Headers(headers)
    details = _error_details(body) if status >= 300 else ""
    suffix = f": {details}" if details else ""
    if 200 <= status < 300:
        return SendResult.accepted()
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        reset = headers.get("x-ratelimit-reset")
        if retry_after is None and reset and reset.isdigit():
            retry_after = max(0.0, int(reset) - (now if now is not None else time.time()))
        return SendResult.transient(
            f"SendGrid 429 rate limited{suffix}", retry_after, throttled=True
        )
    if status in (401, 403):
        # the key or the sender identity is wrong: every message would fail the same way
        return SendResult.unavailable(
            f"SendGrid refused the request ({status}){suffix}: check SENDGRID_API_KEY and "
            "that EMAIL_FROM is a verified sender"
        )
    if status == 408 or status >= 500:
        return SendResult.transient(f"SendGrid {status}{suffix}")
    if status == 400 and _refuses_recipient(body):
        return SendResult.hard_bounce(
            f"SendGrid {status}{suffix}", "hard bounce (SendGrid refused the address)"
        )
    return SendResult.permanent(f"SendGrid {status}{suffix}")


class SendGridProvider:
    name = "sendgrid"

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        concurrency: int = 8,
        timeout: float = 30.0,
        throttle: ProviderThrottle = UNLIMITED,
    ) -> None:
        self.url = api_url.rstrip("/") + SEND_PATH
        self.host = urlsplit(self.url).netloc
        self.timeout = timeout
        self.pool = connection_pool(concurrency, _proxy_for(self.url))
        # the parts of every request that do not change, built once (no Accept-Encoding:
        # httpcore hands the body over as it came)
        self._url = httpcore.URL(self.url)
        self._headers = [
            (b"Host", self.host.encode("ascii")),
            (b"Accept", b"*/*"),
            (b"Connection", b"keep-alive"),
            (b"User-Agent", b"taskflow-jobs"),
            (b"Authorization", f"Bearer {api_key}".encode()),
            (b"Content-Type", b"application/json"),
        ]
        self._extensions = {
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        }
        self.limit = LaneLimit(concurrency)
        self.throttle = throttle
        self._sender: tuple[Any, dict[str, str]] | None = None  # EMAIL_FROM, as JSON once

    def session(self) -> AbstractAsyncContextManager[ConcurrentSession]:
        return concurrent_session(self, self.limit, self.throttle)

    def encode(self, item: OutgoingEmail) -> bytes:
        """The request body; the sender's JSON is built once, not once per email."""
        if self._sender is None or self._sender[0] is not item.sender:
            self._sender = (item.sender, _address(item.sender))
        return orjson.dumps(request_body(item, self._sender[1]))

    async def send_one(self, item: OutgoingEmail) -> SendResult:
        try:
            response = await self.pool.request(
                "POST",
                self._url,
                headers=self._headers,
                content=self.encode(item),
                extensions=self._extensions,
            )
        except CONNECT_ERRORS as exc:
            return SendResult.unavailable(f"cannot connect to SendGrid at {self.host}: {_why(exc)}")
        except TIMEOUTS as exc:
            return SendResult.transient(
                f"SendGrid did not answer within {self.timeout:g}s ({type(exc).__name__})"
            )
        except REQUEST_ERRORS as exc:
            return SendResult.transient(f"SendGrid request failed: {_why(exc)}")
        if 200 <= response.status < 300:
            return ACCEPTED  # the common case: no headers or body to look at
        body = response.content.decode("utf-8", "replace")
        return classify_response(response.status, httpx.Headers(response.headers), body)

    async def aclose(self) -> None:
        await self.pool.aclose()
        self.throttle.close()


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, NO_PROXY...), as httpx's
    client would pick it."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def _why(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
