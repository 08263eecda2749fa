"""Structured JSON logs with request context, and the redaction that keeps secrets out of them.

Every log line passes :func:`redact` last: values under sensitive keys (passwords, tokens,
cookies, ``Authorization``, secrets, TOTP codes) are replaced, and bearer tokens or long
token-like strings inside free text are masked. Personal fields (email, name, phone) are
redacted too: logs are not where PHI lives.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|authorization|cookie|api[_-]?key|signature|"
    r"totp|otp|mfa_code|recovery|captcha|credential|private|session_id|^code$|"
    r"email|full_name|^name$|phone|ssn|dob",
    re.IGNORECASE,
)
# Things that look like credentials wherever they appear in text.
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_LONG_TOKEN = re.compile(r"\b[A-Za-z0-9_-]{32,}\b")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SECRET_QUERY = re.compile(
    r"(?i)([?&][^=\s&]*(?:token|secret|key|password|code|signature)[^=\s&]*=)[^&\s\"']+"
)
# Keys whose values are ours and safe even though they look like tokens.
_SAFE_KEYS = frozenset({"request_id", "job_id", "token_type", "code_kind", "error_code"})


def _scrub_text(value: str) -> str:
    value = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    value = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{REDACTED}", value)
    value = _EMAIL.sub(REDACTED, value)
    return _LONG_TOKEN.sub(REDACTED, value)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return REDACTED
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {k: _scrub_pair(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_scrub(v, depth + 1) for v in value]
    return value


def _scrub_pair(key: str, value: Any, depth: int = 0) -> Any:
    if key in _SAFE_KEYS:
        return value
    if _SENSITIVE_KEY.search(key) and value not in (None, "", [], {}):
        return REDACTED
    return _scrub(value, depth)


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the last line of defence before a line is written."""
    for key in list(event_dict):
        if key in ("exception", "stack", "event"):
            event_dict[key] = _scrub_text(str(event_dict[key]))
            continue
        event_dict[key] = _scrub_pair(key, event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route structlog and the standard library through one JSON renderer on stderr."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log would repeat our own request line without redaction of queries.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    # Alembic narrates every step at INFO; httpx logs full URLs (queries included) at INFO.
    for chatty in ("alembic", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    for noisy in ("uvicorn", "uvicorn.error"):
        logging.getLogger(noisy).handlers = []
        logging.getLogger(noisy).propagate = True
