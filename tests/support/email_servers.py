"""Real stand-ins for the email providers: an aiosmtpd SMTP server with STARTTLS and AUTH,
and the SendGrid stub served by uvicorn, plus a self-signed certificate for them."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import ipaddress
import ssl
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from taskflow_jobs.net import free_port

SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-smtp-pass"


def write_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost; clients trust it via SSL_CERT_FILE."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: records messages and the connection each came on.

    `replies` maps a recipient address to the reply its RCPT gets (e.g. "451 4.3.0 later").
    `envelopes` holds each message's (MAIL FROM, RCPT TO list) as the server saw them, so
    header-injection checks cover the envelope too. `data_delay` makes DATA answer late
    (a hung server); `drop_after` closes the connection instead of answering the DATA
    of that many-th message plus one (once).
    """

    messages: list[EmailMessage] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    data_delay: float = 0.0
    drop_after: int | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.drop_after is not None and len(self.messages) >= self.drop_after:
            self.drop_after = None
            server.transport.close()  # the connection drops before the reply
            return "421 4.4.2 connection dropped"
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(message)
        self.peers.append(session.peer)
        return "250 Message accepted for delivery"

    def connections(self) -> int:
        return len(set(self.peers))

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


class _Authenticator:
    def __init__(self, recorder: SmtpRecorder) -> None:
        self.recorder = recorder

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            self.recorder.logins.append(auth_data.login.decode())
            if (
                auth_data.login == SMTP_USER.encode()
                and auth_data.password == SMTP_PASSWORD.encode()
            ):
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@dataclass
class SmtpServer:
    host: str
    port: int
    recorder: SmtpRecorder
    controller: Controller

    def settings(self) -> dict[str, Any]:
        """Settings overrides that point the smtp provider here."""
        return {
            "email_provider": "smtp",
            "smtp_host": self.host,
            "smtp_port": self.port,
            "smtp_username": SMTP_USER,
            "smtp_password": SMTP_PASSWORD,
            "smtp_starttls": True,
            "smtp_timeout": 5.0,
        }


def start_smtp_server(cert: Path, key: Path) -> SmtpServer:
    """STARTTLS required, AUTH required (and only after TLS)."""
    recorder = SmtpRecorder()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=_Authenticator(recorder),
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    return SmtpServer("127.0.0.1", port, recorder, controller)
