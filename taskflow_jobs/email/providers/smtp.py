"""SMTP: one connection per batch (STARTTLS, then AUTH), reused for its emails.

smtplib is blocking, so a batch's whole conversation runs in one worker thread. Port 465
means implicit TLS; any other port upgrades with STARTTLS unless SMTP_STARTTLS=false (a
trusted local relay). Failures to connect, to start TLS or to log in concern the server,
not the message: they are UNAVAILABLE. Per-email replies are classified by code: 4xx is
transient, 5xx permanent. A connection dropped mid-batch is reopened (twice at most), and a
fresh one is opened every MESSAGES_PER_CONNECTION emails, a limit many servers enforce.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress

from taskflow_jobs.email.compose import OutgoingEmail
from taskflow_jobs.email.providers.base import NOT_SENT, SendControl, SendResult
from taskflow_jobs.jobs.ratelimit import UNLIMITED, ProviderThrottle

log = logging.getLogger(__name__)
IMPLICIT_TLS_PORT = 465
MAX_DROPS = 2  # connections lost mid-batch before the rest is left for a retry
# Many servers refuse more messages per session than this; start a fresh one instead.
MESSAGES_PER_CONNECTION = 100
# RCPT replies that mean the address itself is no good (no such user, not local, bad name)
HARD_BOUNCE_CODES = frozenset({550, 551, 553})


def _text(message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return " ".join(text.split())[:300]


def classify_reply(code: int, message: bytes | str, what: str = "SMTP") -> SendResult:
    """A negative SMTP reply: 4xx = try again later, 5xx = refused for good."""
    error = f"{what} {code} {_text(message)}".strip()
    if 400 <= code < 500:
        return SendResult.transient(error)
    return SendResult.permanent(error)


class SmtpProvider:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 30.0,
        throttle: ProviderThrottle = UNLIMITED,
    ) -> None:
        self.throttle = throttle
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.where = f"{host}:{port}"

    def session(self) -> AbstractAsyncContextManager[SmtpSession]:
        return _session(self)

    async def aclose(self) -> None:
        self.throttle.close()

    def connect(self) -> smtplib.SMTP:
        """Open, secure and authenticate a connection; ConnectionProblem says what failed."""
        context = ssl.create_default_context()
        try:
            if self.port == IMPLICIT_TLS_PORT:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise ConnectionProblem(
                f"cannot connect to SMTP server {self.where}: {_why(exc)}"
            ) from None
        try:
            smtp.ehlo()
            if self.starttls and self.port != IMPLICIT_TLS_PORT:
                if not smtp.has_extn("starttls"):
                    raise ConnectionProblem(
                        f"SMTP server {self.where} does not offer STARTTLS "
                        "(SMTP_STARTTLS=false only for a trusted local relay)"
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            _quit(smtp)
            raise ConnectionProblem(
                f"SMTP server {self.where} refused the login of SMTP_USERNAME "
                f"({exc.smtp_code} {_text(exc.smtp_error)})"
            ) from None
        except ConnectionProblem:
            _quit(smtp)
            raise
        except (OSError, smtplib.SMTPException) as exc:
            _quit(smtp)
            raise ConnectionProblem(f"SMTP session with {self.where} failed: {_why(exc)}") from None
        return smtp


class ConnectionProblem(Exception):
    """Connecting, STARTTLS or AUTH failed; the text is safe to log."""


class SmtpSession:
    """One batch's connection, opened on the first email and closed with the session."""

    def __init__(self, provider: SmtpProvider) -> None:
        self.provider = provider
        self.smtp: smtplib.SMTP | None = None
        self.connections = 0
        self.sent_on_connection = 0
        self.lock = asyncio.Lock()  # one conversation at a time on the connection

    async def send(self, emails: Sequence[OutgoingEmail], control: SendControl) -> list[SendResult]:
        loop = asyncio.get_running_loop()

        def tell(item: OutgoingEmail, result: SendResult) -> None:  # from the worker thread
            loop.call_soon_threadsafe(control.tell, item, result)

        async with self.lock:
            return await asyncio.to_thread(self._send_all, list(emails), control, tell)

    def _send_all(
        self,
        emails: list[OutgoingEmail],
        control: SendControl,
        tell: Callable[[OutgoingEmail, SendResult], None],
    ) -> list[SendResult]:
        results: list[SendResult] = []
        drops = 0
        for index, item in enumerate(emails):
            if not control.may_send():
                results.append(NOT_SENT)
                continue
            if not self.provider.throttle.wait_blocking(control.deadline, control.stop.is_set):
                results.append(NOT_SENT)
                continue
            if self.smtp is not None and self.sent_on_connection >= MESSAGES_PER_CONNECTION:
                self.close()
            if self.smtp is None:
                if drops >= MAX_DROPS:
                    results.append(SendResult.transient("SMTP connection kept dropping"))
                    continue
                try:
                    self.smtp = self.provider.connect()
                    self.connections += 1
                    self.sent_on_connection = 0
                except ConnectionProblem as exc:
                    results.extend([SendResult.unavailable(str(exc))] * (len(emails) - index))
                    return results
            started = time.perf_counter()
            results.append(self._send_one(item).timed(started))
            tell(item, results[-1])
            self.sent_on_connection += 1
            if self.smtp is None:
                drops += 1
        return results

    def _send_one(self, item: OutgoingEmail) -> SendResult:
        assert self.smtp is not None
        try:
            self.smtp.send_message(item.mime())
            return SendResult.accepted()
        except smtplib.SMTPRecipientsRefused as exc:
            code, message = next(iter(exc.recipients.values()))
            if code in HARD_BOUNCE_CODES:
                return SendResult.hard_bounce(
                    f"SMTP recipient refused: {code} {_text(message)}", f"hard bounce (SMTP {code})"
                )
            return classify_reply(code, message, "SMTP recipient refused:")
        except smtplib.SMTPSenderRefused as exc:
            if 400 <= exc.smtp_code < 500:
                return classify_reply(exc.smtp_code, exc.smtp_error, "SMTP sender refused:")
            return SendResult.unavailable(
                f"SMTP server refused EMAIL_FROM ({exc.smtp_code} {_text(exc.smtp_error)})"
            )
        except smtplib.SMTPResponseException as exc:
            return classify_reply(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.close()
            return SendResult.transient(f"SMTP connection lost: {_why(exc)}")
        except smtplib.SMTPException as exc:
            self.close()
            return SendResult.transient(f"SMTP error: {_why(exc)}")

    def close(self) -> None:
        if self.smtp is not None:
            _quit(self.smtp)
            self.smtp = None


@asynccontextmanager
async def _session(provider: SmtpProvider) -> AsyncIterator[SmtpSession]:
    session = SmtpSession(provider)
    try:
        yield session
    finally:
        await asyncio.to_thread(session.close)


def _quit(smtp: smtplib.SMTP) -> None:
    with suppress(Exception):
        smtp.quit()
    with suppress(Exception):
        smtp.close()


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
