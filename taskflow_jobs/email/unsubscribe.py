"""One-click unsubscribe (RFC 8058 / RFC 2369): signed tokens and the headers that carry them.

A token names one user and one message type and is verified without a database lookup:
it is `base64url(user id (16 bytes) | type code (1 byte) | HMAC-SHA256 (first 16 bytes))`,
44 characters with no padding, so every character carries payload and changing any of
them changes the bytes the MAC covers. The key is UNSUBSCRIBE_SECRET; without it, a key
derived from WEBHOOK_SECRET, so a system that has a receiver can serve the links at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote
from uuid import UUID

from taskflow_jobs.settings import Settings

LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"
UNSUBSCRIBE_PATH = "/unsubscribe/"

# The types a user may turn off, with their code in a token. welcome_email is transactional.
TYPE_CODES: dict[str, int] = {"task_assigned": 1, "notification": 2}
TYPES_BY_CODE = {code: kind for kind, code in TYPE_CODES.items()}

_MAC_BYTES = 16
_TOKEN_BYTES = 16 + 1 + _MAC_BYTES
_TOKEN = re.compile(r"[A-Za-z0-9_-]{44}")
_CONTEXT = b"taskflow-jobs unsubscribe v1\x00"
_DERIVATION = b"taskflow-jobs unsubscribe key v1"


class InvalidToken(ValueError):
    """Not a token we issued (malformed, altered, or signed with another key)."""


def signing_key(settings: Settings) -> bytes | None:
    """UNSUBSCRIBE_SECRET, else a key derived from WEBHOOK_SECRET, else None (no links)."""
    if settings.unsubscribe_secret is not None and settings.unsubscribe_secret.get_secret_value():
        return settings.unsubscribe_secret.get_secret_value().encode()
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        secret = settings.webhook_secret.get_secret_value().encode()
        return hmac.new(secret, _DERIVATION, hashlib.sha256).digest()
    return None


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(key: bytes, user_id: UUID, message_type: str) -> str:
    """The token that turns `message_type` off for `user_id`."""
    if message_type not in TYPE_CODES:
        raise ValueError(f"{message_type!r} cannot be turned off")
    payload = user_id.bytes + bytes([TYPE_CODES[message_type]])
    return base64.urlsafe_b64encode(payload + _mac(key, payload)).decode()


def verify_token(key: bytes, token: str) -> tuple[UUID, str]:
    """The user and type a token names; InvalidToken if we did not issue it with `key`."""
    if not _TOKEN.fullmatch(token):
        raise InvalidToken("malformed unsubscribe token")
    raw = base64.urlsafe_b64decode(token)
    if len(raw) != _TOKEN_BYTES:
        raise InvalidToken("malformed unsubscribe token")
    payload, mac = raw[:17], raw[17:]
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise InvalidToken("unsubscribe token signature does not match")
    kind = TYPES_BY_CODE.get(payload[16])
    if kind is None:
        raise InvalidToken("unsubscribe token names an unknown type")
    return UUID(bytes=payload[:16]), kind


@dataclass(frozen=True)
class Unsubscribe:
    """How one email's recipient turns its type off: the page/one-click URL, and mailto."""

    url: str
    mailto: str | None = None

    def headers(self) -> tuple[tuple[str, str], ...]:
        links = [f"<{self.url}>"] + ([f"<{self.mailto}>"] if self.mailto else [])
        return ((LIST_UNSUBSCRIBE, ", ".join(links)), (LIST_UNSUBSCRIBE_POST, ONE_CLICK))


class UnsubscribeLinks:
    """Builds each email's Unsubscribe from the settings (no key: no links)."""

    def __init__(self, settings: Settings) -> None:
        self.key = signing_key(settings)
        self.base_url = settings.receiver_base_url
        self.mailto = settings.unsubscribe_mailto

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def for_user(self, user_id: UUID, message_type: str) -> Unsubscribe | None:
        if self.key is None or message_type not in TYPE_CODES:
            return None
        token = make_token(self.key, user_id, message_type)
        mailto = None
        if self.mailto:
            mailto = f"mailto:{self.mailto}?subject={quote('unsubscribe ' + token)}"
        return Unsubscribe(f"{self.base_url}{UNSUBSCRIBE_PATH}{token}", mailto)
