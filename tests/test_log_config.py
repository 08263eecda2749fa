"""Logs are JSON lines with request context, and secrets never reach them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from aayu_accounts.log_config import REDACTED, configure_logging, redact

SECRETS = {
    "password": "correct horse battery staple",
    "new_password": "Tr0ub4dor&3-more",
    "token": "tok_5f2b8c3e9a1d4f6b8c0e2a4c6e8f0a1b",
    "session_token": "aayu_sess_0123456789abcdefghijklmnopqrstuv",
    "authorization": "Bearer abc.def.ghi",
    "cookie": "aayu_session=s3cr3t-cookie-value",
    "client_secret": "cs_live_9f8e7d6c5b4a3f2e1d0c",
    "totp_code": "492039",
    "email": "dr.patel@clinic.example",
    "full_name": "Darshan Patel",
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    configure_logging("DEBUG", json=True)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)
        configure_logging("INFO", json=True)


def test_sensitive_keys_are_redacted(captured: io.StringIO) -> None:
    structlog.get_logger("t").info("login.attempt", **SECRETS, nested={"password": "nested-pw"})
    line = captured.getvalue()
    record = json.loads(line)
    for key in SECRETS:
        assert record[key] == REDACTED
    assert record["nested"]["password"] == REDACTED
    for value in [*SECRETS.values(), "nested-pw"]:
        assert value not in line


def test_secrets_inside_free_text_are_masked(captured: io.StringIO) -> None:
    structlog.get_logger("t").warning(
        "upstream said Authorization: Bearer eyJhbGciOi.payload.sig for dr.patel@clinic.example "
        "with token 8f14e45fceea167a5a36dedd4bea2543aabbccdd"
    )
    line = captured.getvalue()
    assert "eyJhbGciOi" not in line
    assert "dr.patel@clinic.example" not in line
    assert "8f14e45fceea167a5a36dedd4bea2543aabbccdd" not in line


def test_standard_library_records_are_redacted_too(captured: io.StringIO) -> None:
    logging.getLogger("some.library").error("sent Bearer abcdefghijklmnop to the server")
    assert "abcdefghijklmnop" not in captured.getvalue()


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=32, max_size=80))
def test_any_long_token_like_value_is_masked(token: str) -> None:
    event = redact(None, "info", {"event": f"value {token} seen", "detail": token})
    assert token not in json.dumps(event)


async def test_access_log_carries_request_id_and_no_query_or_headers(
    client: httpx.AsyncClient, captured: io.StringIO
) -> None:
    response = await client.get(
        "/health?token=leaky-query-token-value",
        headers={
            "x-request-id": "req-abcdef123",
            "authorization": "Bearer s3cr3t-bearer",
            "cookie": "aayu_session=s3cr3t-cookie-in-header",
        },
    )
    assert response.headers["x-request-id"] == "req-abcdef123", "a valid id is echoed"
    lines = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    access = [r for r in lines if r.get("event") == "http.request"]
    assert access, lines
    assert access[0]["request_id"] == "req-abcdef123"
    assert access[0]["method"] == "GET"
    assert access[0]["path"] == "/health"
    assert access[0]["status"] == 200
    assert "duration_ms" in access[0]
    text = captured.getvalue()
    assert "leaky-query-token-value" not in text
    assert "s3cr3t-bearer" not in text
    assert "s3cr3t-cookie-in-header" not in text
