"""Delivery: SMTP through aiosmtplib with retries, or the local outbox when SMTP is not set.

The transport is chosen once per process from the settings (``configure``); the job handler
asks :func:`current_transport`. Retries: tenacity retries a transient failure (connection,
timeout, 4xx reply) a few times with jittered backoff inside one job run; if that still fails,
the job system reschedules the job with its own, longer backoff. A permanent refusal (5xx) is
not retried here: retrying cannot fix an address the server rejects.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from aayu_accounts.config import Settings, get_settings
from aayu_accounts.kit.resilience import SMTP, dependency


class EmailTransport(Protocol):
    """Delivers one message; ``None`` from :meth:`deliver` means 'kept in the local outbox'."""

    @property
    def name(self) -> str: ...

    async def deliver(self, message: EmailMessage) -> bool: ...


class LocalOutbox:
    """Development without SMTP: the message stays in the outbox table for the console."""

    name = "local"

    async def deliver(self, message: EmailMessage) -> bool:
        return False


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None
    timeout: float

    @classmethod
    def from_url(cls, url: str, timeout: float) -> SmtpConfig:
        """``smtp://[user:pass@]host[:port]`` (STARTTLS when offered), ``smtp+starttls://``
        (STARTTLS required) or ``smtps://`` (implicit TLS, port 465)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps", "smtp+starttls"):
            raise ValueError("AAYU_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://")
        implicit = scheme == "smtps"
        return cls(
            hostname=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit,
            # None lets aiosmtplib upgrade when the server offers STARTTLS.
            start_tls=True if scheme == "smtp+starttls" else (False if implicit else None),
            timeout=timeout,
        )


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 400 <= exc.code < 500
    return isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError)


class SmtpSender:
    name = "smtp"

    def __init__(self, config: SmtpConfig, *, attempts: int = 3, max_wait: float = 5.0) -> None:
        self.config = config
        self.attempts = attempts
        self.max_wait = max_wait

    async def deliver(self, message: EmailMessage) -> bool:
        # Through the SMTP dependency's policy (kit/resilience.py): a timeout per attempt,
        # tenacity retries of transient failures only, and the shared breaker, so a dead
        # mail server fails fast and the durable job queue keeps the message for later.
        await dependency(SMTP).call(
            lambda: aiosmtplib.send(
                message,
                hostname=self.config.hostname,
                port=self.config.port,
                username=self.config.username,
                password=self.config.password,
                use_tls=self.config.use_tls,
                start_tls=self.config.start_tls,
                timeout=self.config.timeout,
                tls_context=ssl.create_default_context(),
            ),
            attempts=self.attempts,
            retry_if=_transient,
        )
        return True


def build_message(*, sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="aayuwell.local")
    message.set_content(body)
    return message


@dataclass
class _Configured:
    transport: EmailTransport
    sender: str


_configured: _Configured | None = None


def transport_for(settings: Settings) -> EmailTransport:
    if settings.smtp_url:
        return SmtpSender(SmtpConfig.from_url(settings.smtp_url, settings.smtp_timeout_seconds))
    return LocalOutbox()


def configure(settings: Settings, transport: EmailTransport | None = None) -> None:
    """Choose this process's transport (the app and the worker call it at start-up)."""
    global _configured  # noqa: PLW0603 - one transport per process, like its settings
    _configured = _Configured(transport or transport_for(settings), settings.smtp_from)


def reset() -> None:
    """Forget the configured transport (tests; the next use reads the settings again)."""
    global _configured  # noqa: PLW0603 - see configure()
    _configured = None


def current() -> tuple[EmailTransport, str]:
    if _configured is None:
        configure(get_settings())
    assert _configured is not None
    return _configured.transport, _configured.sender
