"""CAPTCHA: ALTCHA proof of work (solved here with the altcha library, as the widget would),
expiry and single use across instances; Turnstile and hCaptcha against a local HTTP stand-in."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx
import pytest
import pytest_asyncio
from altcha import v1 as altcha_v1

from aayu_accounts.config import CaptchaProvider, Settings
from aayu_accounts.identity.captcha import (
    AltchaCaptcha,
    SiteverifyCaptcha,
    build_captcha,
)
from aayu_accounts.identity.throttle import MemoryStore, ThrottleStore, build_throttle_store
from aayu_accounts.kit.clock import FrozenClock
from tests.identity.accounts.helpers import solve_captcha
from tests.identity.throttle_fixtures import redis_settings, throttle_store

__all__ = ["redis_settings", "throttle_store"]

KEY = "test-hmac-key-for-altcha"


@pytest.fixture
def altcha_captcha(throttle_store: ThrottleStore, frozen_clock: FrozenClock) -> AltchaCaptcha:
    return AltchaCaptcha(KEY, throttle_store, max_number=2000, expires_seconds=300)


def test_challenge_has_what_the_widget_needs(altcha_captcha: AltchaCaptcha) -> None:
    challenge = altcha_captcha.challenge()
    assert challenge["algorithm"] == "SHA-256"
    assert challenge["maxnumber"] == 2000
    assert len(challenge["challenge"]) == 64
    assert len(challenge["signature"]) == 64
    assert "expires=" in challenge["salt"]
    assert altcha_captcha.challenge()["salt"] != challenge["salt"]
    json.dumps(challenge)  # the endpoint returns it as JSON


async def test_a_solution_is_accepted_once(altcha_captcha: AltchaCaptcha) -> None:
    payload = solve_captcha(altcha_captcha.challenge())
    assert await altcha_captcha.verify(payload)
    assert not await altcha_captcha.verify(payload)  # replay
    assert await altcha_captcha.verify(solve_captcha(altcha_captcha.challenge()))


async def test_an_expired_solution_is_refused(
    altcha_captcha: AltchaCaptcha, frozen_clock: FrozenClock
) -> None:
    payload = solve_captcha(altcha_captcha.challenge())
    frozen_clock.advance(299)
    still_fresh = solve_captcha(altcha_captcha.challenge())
    frozen_clock.advance(1)
    assert not await altcha_captcha.verify(payload)
    assert await altcha_captcha.verify(still_fresh)


async def test_tampered_or_foreign_solutions_are_refused(
    altcha_captcha: AltchaCaptcha, throttle_store: ThrottleStore
) -> None:
    challenge = altcha_captcha.challenge()
    good = json.loads(base64.b64decode(solve_captcha(challenge)))
    wrong_number = solve_captcha(challenge, number=good["number"] + 1)
    assert not await altcha_captcha.verify(wrong_number)
    later = challenge["salt"].replace("expires=", "expires=9")
    assert not await altcha_captcha.verify(solve_captcha(challenge, salt=later))
    other_key = AltchaCaptcha("another key", throttle_store, max_number=2000)
    assert not await other_key.verify(solve_captcha(challenge))
    foreign = altcha_v1.create_challenge(
        algorithm="SHA-256",
        max_number=2000,
        salt_length=12,
        hmac_key=KEY,
        salt="",
        number=None,
        expires=None,  # no expiry: could be replayed forever once the marker lapses
        params=None,
    )
    as_dict = foreign.to_dict() | {"maxnumber": 2000}
    assert not await altcha_captcha.verify(solve_captcha(as_dict))
    assert await altcha_captcha.verify(solve_captcha(challenge))


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not base64 at all!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1, 2, 3]").decode(),
        base64.b64encode(b'{"algorithm": "SHA-256"}').decode(),
        "A" * 5000,
        "\u00e9\u00e9\u00e9\u00e9",
    ],
)
async def test_malformed_payloads_are_refused_without_error(
    altcha_captcha: AltchaCaptcha, payload: str
) -> None:
    assert await altcha_captcha.verify(payload) is False


@pytest.mark.parametrize(
    "changes",
    [
        {"number": "12"},
        {"number": True},
        {"number": -1},
        {"algorithm": "SHA-1"},
        {"signature": None},
        {"salt": 5},
    ],
)
async def test_wrongly_typed_fields_are_refused(
    altcha_captcha: AltchaCaptcha, changes: dict[str, Any]
) -> None:
    assert not await altcha_captcha.verify(solve_captcha(altcha_captcha.challenge(), **changes))


async def test_salt_with_two_expiries_is_refused(altcha_captcha: AltchaCaptcha) -> None:
    challenge = altcha_captcha.challenge()
    doubled = challenge["salt"] + "expires=99999999999&"
    assert not await altcha_captcha.verify(solve_captcha(challenge, salt=doubled))


async def test_a_solution_is_single_use_across_instances_sharing_redis(
    redis_settings: Settings, frozen_clock: FrozenClock
) -> None:
    first_store = build_throttle_store(redis_settings)
    second_store = build_throttle_store(redis_settings)
    try:
        first = AltchaCaptcha(KEY, first_store, max_number=2000)
        second = AltchaCaptcha(KEY, second_store, max_number=2000)
        payload = solve_captcha(first.challenge())
        assert await second.verify(payload)
        assert not await first.verify(payload)
        assert not await second.verify(payload)
    finally:
        await first_store.aclose()
        await second_store.aclose()


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="HMAC key"):
        AltchaCaptcha("", MemoryStore())


async def test_build_captcha_defaults_to_altcha_with_the_given_key(
    settings: Settings, throttle_store: ThrottleStore, frozen_clock: FrozenClock
) -> None:
    assert settings.captcha_provider is CaptchaProvider.ALTCHA
    captcha = build_captcha(settings, throttle_store, hmac_key=KEY)
    assert isinstance(captcha, AltchaCaptcha)
    challenge = captcha.challenge()
    assert challenge["maxnumber"] == settings.altcha_max_number == 100_000
    # Signed with the key handed in (the keyring's, later): a verifier with that key agrees.
    same_key = AltchaCaptcha(KEY, MemoryStore())
    assert await same_key.verify(solve_captcha(challenge))
    assert await captcha.verify(solve_captcha(captcha.challenge()))


class Siteverify(BaseHTTPRequestHandler):
    """A local stand-in for Turnstile's and hCaptcha's siteverify endpoints."""

    requests: ClassVar[list[dict[str, list[str]]]] = []
    secret = "stand-in-secret"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        Siteverify.requests.append(form)
        token = form.get("response", [""])[0]
        if token == "server-error":
            self._send(500, b"oops", "text/plain")
            return
        if token == "not-json":
            self._send(200, b"<html>hello</html>", "text/html")
            return
        ok = form.get("secret") == [self.secret] and token == "good-token"
        body = {"success": ok} if ok else {"success": False, "error-codes": ["invalid-input"]}
        self._send(200, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def siteverify_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Siteverify)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Siteverify.requests.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/siteverify"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.mark.parametrize("provider", [CaptchaProvider.TURNSTILE, CaptchaProvider.HCAPTCHA])
async def test_siteverify_providers(
    provider: CaptchaProvider,
    siteverify_url: str,
    http: httpx.AsyncClient,
    throttle_store: ThrottleStore,
) -> None:
    settings = Settings(
        captcha_provider=provider,
        captcha_secret=Siteverify.secret,
        captcha_site_key="site-key-123",
        captcha_verify_url=siteverify_url,
    )
    captcha = build_captcha(settings, throttle_store, http=http)
    assert isinstance(captcha, SiteverifyCaptcha)
    assert captcha.challenge() == {"provider": provider.value, "site_key": "site-key-123"}
    assert await captcha.verify("good-token", remote_ip="203.0.113.9")
    sent = Siteverify.requests[-1]
    assert sent["secret"] == [Siteverify.secret]
    assert sent["response"] == ["good-token"]
    assert sent["remoteip"] == ["203.0.113.9"]
    assert ("sitekey" in sent) == (provider is CaptchaProvider.HCAPTCHA)
    assert not await captcha.verify("bad-token")
    assert not await captcha.verify("server-error")  # fails closed
    assert not await captcha.verify("not-json")
    assert not await captcha.verify("")
    wrong_secret = SiteverifyCaptcha(
        provider.value, secret="nope", verify_url=siteverify_url, http=http
    )
    assert not await wrong_secret.verify("good-token")


async def test_siteverify_unreachable_fails_closed() -> None:
    captcha = SiteverifyCaptcha(
        "turnstile",
        secret="s",
        verify_url="http://127.0.0.1:1/siteverify",
        timeout_seconds=1.0,
    )
    try:
        assert not await captcha.verify("good-token")
    finally:
        await captcha.aclose()


def test_siteverify_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        SiteverifyCaptcha("hcaptcha", secret="", verify_url="http://127.0.0.1:1/")
    problems = Settings(captcha_provider=CaptchaProvider.HCAPTCHA).production_problems()
    assert any("AAYU_CAPTCHA_SECRET" in problem for problem in problems)
