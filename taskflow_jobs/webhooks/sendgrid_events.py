"""SendGrid's Signed Event Webhook: verify a batch, and what it means for the suppression list.

SendGrid signs `timestamp + raw body` with ECDSA (P-256, SHA-256) and sends the base64
DER signature in `X-Twilio-Email-Event-Webhook-Signature` and the Unix timestamp in
`X-Twilio-Email-Event-Webhook-Timestamp`. The verification key is shown in SendGrid's
Mail Settings as base64 DER (SubjectPublicKeyInfo without PEM framing); PEM is accepted
too. A timestamp outside SENDGRID_WEBHOOK_MAX_AGE is refused, so a captured batch cannot
be replayed later; inside the window a replay changes nothing (suppression is idempotent).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from taskflow_jobs.settings import Settings, SettingsError

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SOURCE = "sendgrid-events"
# the events that mean "write no more to this address"
SUPPRESSING_EVENTS = frozenset({"bounce", "dropped", "spamreport", "unsubscribe"})


class BadSignature(Exception):
    """The batch is not SendGrid's (or is too old); the text is safe to log."""


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key from its base64 DER (as SendGrid shows it) or PEM form."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError):
        raise SettingsError(
            "SENDGRID_WEBHOOK_PUBLIC_KEY: not a public key (base64 DER or PEM)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SettingsError("SENDGRID_WEBHOOK_PUBLIC_KEY: not an ECDSA public key")
    return key


@dataclass(frozen=True)
class EventVerifier:
    key: ec.EllipticCurvePublicKey
    max_age: float

    @classmethod
    def from_settings(cls, settings: Settings) -> EventVerifier | None:
        """None when SENDGRID_WEBHOOK_PUBLIC_KEY is unset (the route then answers 503)."""
        if not settings.sendgrid_webhook_public_key:
            return None
        return cls(
            load_public_key(settings.sendgrid_webhook_public_key), settings.sendgrid_webhook_max_age
        )

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
        """Raise BadSignature unless SendGrid signed exactly these bytes, recently."""
        signature, stamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
        if not signature or not stamp:
            raise BadSignature("missing SendGrid signature or timestamp header")
        if not stamp.isdigit() or len(stamp) > 12:
            raise BadSignature("malformed SendGrid timestamp")
        now = time.time() if now is None else now
        if abs(now - int(stamp)) > self.max_age:
            raise BadSignature("SendGrid timestamp outside the replay window")
        try:
            der = base64.b64decode(signature, validate=True)
            self.key.verify(der, stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature):
            raise BadSignature("SendGrid signature does not match") from None


_ADDRESS = re.compile(r"[^\s@\x00]{1,64}@[^\s@\x00]{1,189}")


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # an unpaired surrogate from JSON
        return False
    return True


class BadEvents(ValueError):
    """The body is not a SendGrid event batch (a JSON array of objects)."""


@dataclass
class EventBatch:
    suppress: dict[str, str] = field(default_factory=dict)  # address: reason
    events: int = 0
    ignored: int = 0


def _reason(event: Mapping[str, Any]) -> str | None:
    """The suppression reason of one event, or None when it asks for none."""
    kind = event.get("event")
    if kind not in SUPPRESSING_EVENTS:
        return None
    if kind == "bounce":
        if event.get("type") == "blocked":  # a temporary refusal, not a dead address
            return None
        classification = event.get("bounce_classification")
        return f"bounce ({classification})" if isinstance(classification, str) else "bounce"
    if kind == "dropped":
        why = event.get("reason")
        return f"dropped ({' '.join(str(why).split())[:80]})" if why else "dropped"
    return "spam report" if kind == "spamreport" else "unsubscribe"


def parse_events(body: bytes) -> EventBatch:
    """What a batch asks of the suppression list (unknown and other events are ignored)."""
    try:
        events = json.loads(body)
    except ValueError:
        raise BadEvents("body is not JSON") from None
    if not isinstance(events, list):
        raise BadEvents("body must be a JSON array of SendGrid events")
    batch = EventBatch(events=len(events))
    for event in events:
        reason = _reason(event) if isinstance(event, dict) else None
        address = event.get("email") if isinstance(event, dict) else None
        if reason is None or not isinstance(address, str):
            batch.ignored += 1
            continue
        address = address.strip().lower()
        if not _ADDRESS.fullmatch(address) or not _encodable(address):
            batch.ignored += 1
            continue
        batch.suppress.setdefault(address, reason)
    return batch
