"""The SDK's resilience against real sockets: retries on 5xx with a fresh signature each time,
backoff, never a retry on a 4xx (429 included) nor of a call that is not idempotent, the
breaker opened by 5xx answers, timeouts against a server that never answers; and the SDK over
TLS served by ``aayu-accounts serve --ssl-certfile/--ssl-keyfile``.

The scripted server is a real HTTP server on loopback (``http.server`` in a thread) that
answers a list of statuses in turn: a 5xx or a silent peer cannot be had on demand from the
real service, whose own tests are in ``test_sdk_against_a_server.py``.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from aayu_accounts.client import (
    AccountsClient,
    ApiError,
    CircuitOpenError,
    ClientOptions,
    RateLimitedError,
    ServerError,
    TransportFailure,
    UnavailableError,
)
from aayu_accounts.client.client import FLAGS
from aayu_accounts.client.signing import NONCE_HEADER, SIGNATURE_HEADER
from tests.client.server import ServerStack, free_port, server_stack
from tests.fixtures.tls import self_signed_certificate

KEY_ID, SECRET = "ak_" + "1" * 32, "ab" * 32

# (status, extra headers, JSON body) of one scripted answer.
Answer = tuple[int, dict[str, str], dict[str, object]]


@dataclass
class Scripted:
    """Answers ``script`` in turn (the last one repeats) and keeps each request's headers."""

    script: list[Answer]
    seen: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    state = Scripted(script=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            index = len(state.seen)
            state.seen.append(dict(self.headers.items()))
            status, headers, body = state.script[min(index, len(state.script) - 1)]
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


OK: Answer = (200, {}, {"flags": {"NEW_AUTH": True}})
UNAVAILABLE: Answer = (503, {}, {"code": "unavailable", "status": 503})


def test_a_5xx_is_retried_with_backoff_and_a_fresh_signature(scripted: Scripted) -> None:
    scripted.script = [UNAVAILABLE, (502, {}, {}), OK]
    options = ClientOptions(max_attempts=3, backoff_initial=0.1, backoff_max=1.0)
    with AccountsClient(scripted.url, KEY_ID, SECRET, options=options) as accounts:
        started = time.monotonic()
        assert accounts.evaluate_flags() == {"NEW_AUTH": True}
        elapsed = time.monotonic() - started
    assert len(scripted.seen) == 3
    # Each attempt is signed again: a resent nonce would be refused as a replay.
    assert len({h[NONCE_HEADER] for h in scripted.seen}) == 3
    assert len({h[SIGNATURE_HEADER] for h in scripted.seen}) == 3
    # Exponential backoff: at least 0.1 s, then 0.2 s, before the second and third attempts.
    assert elapsed >= 0.3


def test_retries_stop_at_max_attempts_with_the_server_error(scripted: Scripted) -> None:
    scripted.script = [UNAVAILABLE]
    options = ClientOptions(max_attempts=2, backoff_initial=0.01, breaker_fail_max=100)
    with (
        AccountsClient(scripted.url, KEY_ID, SECRET, options=options) as accounts,
        pytest.raises(ServerError) as raised,
    ):
        accounts.evaluate_flags()
    assert raised.value.status == 503
    assert raised.value.code == "unavailable"
    assert len(scripted.seen) == 2


def test_a_call_that_is_not_idempotent_is_tried_once(scripted: Scripted) -> None:
    scripted.script = [UNAVAILABLE, OK]
    options = ClientOptions(max_attempts=5, backoff_initial=0.01)
    with AccountsClient(scripted.url, KEY_ID, SECRET, options=options) as accounts:
        with pytest.raises(ServerError):
            accounts._call(FLAGS, {}, idempotent=False)
        assert len(scripted.seen) == 1
        assert accounts._call(FLAGS, {}, idempotent=True) == OK[2]  # the idempotent one retries


def test_a_429_is_raised_at_once_with_its_retry_after(scripted: Scripted) -> None:
    scripted.script = [(429, {"Retry-After": "7"}, {"code": "rate_limited", "status": 429}), OK]
    options = ClientOptions(max_attempts=5, backoff_initial=0.01, breaker_fail_max=1)
    with AccountsClient(scripted.url, KEY_ID, SECRET, options=options) as accounts:
        with pytest.raises(RateLimitedError) as raised:
            accounts.evaluate_flags()
        assert raised.value.retry_after == 7
        assert raised.value.code == "rate_limited"
        assert len(scripted.seen) == 1  # never retried
        assert accounts.breaker_state == "closed"  # and not the service's failure


def test_other_4xx_are_raised_at_once(scripted: Scripted) -> None:
    scripted.script = [(422, {}, {"code": "validation_error", "status": 422}), OK]
    options = ClientOptions(max_attempts=5, backoff_initial=0.01, breaker_fail_max=1)
    with AccountsClient(scripted.url, KEY_ID, SECRET, options=options) as accounts:
        with pytest.raises(ApiError) as raised:
            accounts.evaluate_flags()
        assert not isinstance(raised.value, UnavailableError)
        assert raised.value.code == "validation_error"
        assert len(scripted.seen) == 1
        assert accounts.breaker_state == "closed"


def test_5xx_answers_open_the_breaker(scripted: Scripted) -> None:
    scripted.script = [UNAVAILABLE]
    options = ClientOptions(max_attempts=1, breaker_fail_max=2, breaker_reset_seconds=60)
    with AccountsClient(scripted.url, KEY_ID, SECRET, options=options) as accounts:
        for _ in range(2):
            with pytest.raises(ServerError):
                accounts.evaluate_flags()
        assert accounts.breaker_state == "open"
        with pytest.raises(CircuitOpenError):
            accounts.evaluate_flags()
    assert len(scripted.seen) == 2  # the open breaker sent nothing


def test_a_server_that_never_answers_times_out() -> None:
    # Accepts connections (the kernel's backlog) but never reads nor answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        options = ClientOptions(timeout=0.3, max_attempts=2, backoff_initial=0.01)
        with AccountsClient(url, KEY_ID, SECRET, options=options) as accounts:
            started = time.monotonic()
            with pytest.raises(TransportFailure):
                accounts.evaluate_flags()
            elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5  # two attempts of 0.3 s each, not the 5 s default


# --- TLS terminated by `serve` itself -------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path) -> AsyncIterator[ServerStack]:
    # TLS does not depend on the database: SQLite is enough.
    async with server_stack("sqlite", tmp_path) as created:
        yield created


def test_serve_terminates_tls_and_the_sdk_calls_over_https(
    stack: ServerStack, tmp_path: Path
) -> None:
    """``serve --ssl-certfile/--ssl-keyfile`` answers HTTPS (signed calls included) and does
    not answer plain HTTP."""
    cert_file, key_file = self_signed_certificate(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aayu_accounts",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ssl-certfile",
            str(cert_file),
            "--ssl-keyfile",
            str(key_file),
        ],
        env=stack.env,
        cwd=stack.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trust = ssl.create_default_context(cafile=str(cert_file))
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"serve exited with {process.returncode}"
            try:
                health = httpx.get(base + "/health", verify=trust, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not answer over TLS"
                time.sleep(0.2)
        assert health.status_code == 200
        assert health.headers["Strict-Transport-Security"].startswith("max-age=")
        transport = httpx.HTTPTransport(verify=trust)
        with AccountsClient(base, stack.key_id, stack.secret, transport=transport) as sdk:
            assert "NEW_AUTH" in sdk.evaluate_flags()
            assert sdk.introspect("not-a-session-token-at-all").active is False
        # The certificate is checked: without trusting it the SDK does not talk.
        options = ClientOptions(max_attempts=1)
        with (
            AccountsClient(base, stack.key_id, stack.secret, options=options) as untrusting,
            pytest.raises(TransportFailure),
        ):
            untrusting.evaluate_flags()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
