"""Who may call the receiver: an HMAC signature over timestamp and body, or a bearer token.

Signed requests carry

    X-Taskflow-Timestamp: <unix seconds>
    X-Taskflow-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with WEBHOOK_SECRET>

and are accepted within `REPLAY_WINDOW` seconds of the timestamp (either direction, for
clock skew). Inside the window a replay is refused too: the routes record the request's
`replay_key` in the database in the same transaction as its effect (see `store.py`), and
refuse it the second time unless the request's effect is keyed (idempotent), in which case
the repeat gets the original answer.
Senders that can only set a static header (Supabase database webhooks) send
`Authorization: Bearer <WEBHOOK_SECRET>` instead; that is a password, so use it over TLS.

Every comparison is constant-time, and every failure looks the same to the caller (401
`{"error": "unauthorized"}`); the precise reason is only logged.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TIMESTAMP_HEADER = "x-taskflow-timestamp"
SIGNATURE_HEADER = "x-taskflow-signature"
SCHEME = "sha256"
REPLAY_WINDOW = 300.0
MIN_SECRET_LENGTH = 16


class Unauthorized(Exception):
    """Authentication failed; `reason` is for the log, never for the response."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """How a request authenticated. `replay_key` and `expires_at` are set for signed ones."""

    method: str  # "signature" | "bearer" | "insecure-dev"
    replay_key: str | None = None
    expires_at: float | None = None


def signature(secret: str, timestamp: str | int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers that authenticate `body` (what a sender does; used by tests and the bench)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "X-Taskflow-Timestamp": ts,
        "X-Taskflow-Signature": f"{SCHEME}={signature(secret, ts, body)}",
    }


def check_secret(secret: str) -> None:
    """Refuse secrets too short to resist guessing (raised at startup, naming the setting)."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"WEBHOOK_SECRET must be at least {MIN_SECRET_LENGTH} characters; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


class Authenticator:
    """Checks the credentials of one request against the current (and previous) secret."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        window: float = REPLAY_WINDOW,
        insecure_dev: bool = False,
    ) -> None:
        self._secrets = [s.encode() for s in secrets if s]
        self.window = window
        self.insecure_dev = insecure_dev and not self._secrets
        if not self._secrets and not insecure_dev:
            raise ValueError("a webhook secret is required unless insecure_dev is set")

    def authenticate(
        self, headers: Mapping[str, str], body: bytes, now: float | None = None
    ) -> Caller:
        """The caller, or Unauthorized. `headers` must be case-insensitive (Starlette's are)."""
        if self.insecure_dev:
            return Caller("insecure-dev")
        if SIGNATURE_HEADER in headers or TIMESTAMP_HEADER in headers:
            try:
                return self._signed(headers, body, time.time() if now is None else now)
            except Unauthorized:
                if not self._bearer_ok(headers):
                    raise
                return Caller("bearer")
        if self._bearer_ok(headers):
            return Caller("bearer")
        raise Unauthorized("no credentials" if "authorization" not in headers else "wrong token")

    def _bearer_ok(self, headers: Mapping[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = token.strip().encode("utf-8", "replace")
        # compare against every secret, so the time taken does not tell which one matched
        matches = [hmac.compare_digest(given, expected) for expected in self._secrets]
        return any(matches)

    def _signed(self, headers: Mapping[str, str], body: bytes, now: float) -> Caller:
        raw_ts = headers.get(TIMESTAMP_HEADER, "").strip()
        if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
            raise Unauthorized("missing or malformed timestamp")
        ts = int(raw_ts)
        if abs(now - ts) > self.window:
            raise Unauthorized(f"timestamp outside the {self.window:.0f}s window")
        given = _signatures(headers.get(SIGNATURE_HEADER, ""))
        if not given:
            raise Unauthorized("missing or malformed signature")
        message = raw_ts.encode() + b"." + body
        expected = [
            hmac.new(s, message, hashlib.sha256).hexdigest().encode() for s in self._secrets
        ]
        matches = [hmac.compare_digest(g, e) for g in given for e in expected]
        if not any(matches):
            raise Unauthorized("bad signature")
        replay_key = "sig:" + hashlib.sha256(message).hexdigest()
        return Caller("signature", replay_key=replay_key, expires_at=ts + self.window)


def _signatures(header: str) -> list[bytes]:
    """`sha256=<hex>` values of a signature header (comma-separated during a key rotation)."""
    found = []
    for part in header.replace(" ", ",").split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme.lower() == SCHEME and value:
            found.append(value.strip().lower().encode("ascii", "replace"))
    return found[:4]
