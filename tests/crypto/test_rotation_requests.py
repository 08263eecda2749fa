"""Key rotation seen from requests: CSRF tokens and service-client secrets keep working while
a new version is published, activates and the data is re-encrypted; only retirement ends the
old version (which shows the checks can fail).

The app reads the process keyring on every request, so installing a keyring with the new
version stands for the scheduled refresh that loads it (``tests/crypto/test_rotation.py``
shows the refresh itself on two instances).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from altcha import v1 as altcha_v1
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from aayu_accounts.api_security.csrf import csrf_token_for
from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto import primitives
from aayu_accounts.crypto.keyring import KeyPurpose, Keyring, KeyVersion, install_keyring
from aayu_accounts.crypto.keyring.core import ciphertext_version
from aayu_accounts.crypto.keyring.reencrypt import reencrypt_all
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models import Base
from tests.api_security.conftest import SigningClient, create_client
from tests.identity.accounts.helpers import login, register, verify

DELAY = timedelta(seconds=120)
FLAGS = "/api/v1/service/flags/evaluate"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"argon2_memory_kib": 1024, "argon2_time_cost": 1})


@pytest_asyncio.fixture(loop_scope="session")
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # HTTPS: the session cookie is Secure outside development.
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


def published(ring: Keyring, purpose: KeyPurpose) -> Keyring:
    """``ring`` plus version 2 of ``purpose``, activating after the delay."""
    new = KeyVersion(purpose, 2, primitives.random_key(), clock.now() + DELAY)
    return Keyring([*ring.all_versions(), new])


def retired(ring: Keyring, purpose: KeyPurpose) -> Keyring:
    return Keyring([k for k in ring.all_versions() if k.purpose is not purpose or k.version != 1])


async def test_csrf_rotation_fails_no_request(
    browser: httpx.AsyncClient, db: Database, keyring: Keyring, frozen_clock: FrozenClock
) -> None:
    account = await register(browser)
    await verify(browser, db, account)
    response = await login(browser, account)
    assert response.status_code == 200, response.text
    org_id = response.json()["user"]["memberships"][0]["org_id"]
    old_token = browser.cookies.get("aayu_csrf")
    assert old_token is not None
    assert old_token.startswith("1.")

    async def change_org(token: str, name: str) -> httpx.Response:
        # The double-submit cookie holds the token the page would hold.
        domains = {c.domain for c in browser.cookies.jar if c.name == "aayu_csrf"}
        browser.cookies.delete("aayu_csrf")
        for domain in domains:
            browser.cookies.set("aayu_csrf", token, domain=domain)
        return await browser.patch(
            f"/api/v1/orgs/{org_id}", json={"name": name}, headers={"X-CSRF-Token": token}
        )

    assert (await change_org(old_token, "Before rotation")).status_code == 200

    ring = published(keyring, KeyPurpose.CSRF)
    install_keyring(ring)  # published: loaded everywhere, not yet signing
    assert (await change_org(old_token, "Published")).status_code == 200

    frozen_clock.advance(DELAY)  # version 2 signs from now on
    assert (await change_org(old_token, "Active, old token")).status_code == 200
    session_token = browser.cookies.get("aayu_session")
    assert session_token is not None
    new_token = csrf_token_for(session_token)
    assert new_token.startswith("2.")
    assert (await change_org(new_token, "Active, new token")).status_code == 200

    install_keyring(retired(ring, KeyPurpose.CSRF))  # the grace period ends here
    refused = await change_org(old_token, "Retired")
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    assert (await change_org(new_token, "After retirement")).status_code == 200


async def test_client_secret_key_rotation_fails_no_signed_request(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Database,
    keyring: Keyring,
    frozen_clock: FrozenClock,
) -> None:
    signer = SigningClient(client, await create_client(db, "rotation-backend"))
    directory = app.state.api_security.directory

    async def call() -> int:
        directory.forget()  # decrypt the stored secret again, as a fresh instance would
        return (await signer.post(FLAGS, {})).status_code

    async def stored_versions() -> set[int]:
        async with db.session_scope(write=False) as session:
            rows = await session.execute(
                text("SELECT secret_ciphertext FROM service_client_secrets")
            )
            return {ciphertext_version(bytes(row[0])) for row in rows}

    assert await call() == 200
    ring = published(keyring, KeyPurpose.CLIENT_SECRET)
    install_keyring(ring)
    assert await call() == 200
    frozen_clock.advance(DELAY)
    assert await call() == 200
    assert await stored_versions() == {1}
    assert await reencrypt_all(db, ring, metadata=Base.metadata) >= 1
    assert await stored_versions() == {2}
    assert await call() == 200
    install_keyring(retired(ring, KeyPurpose.CLIENT_SECRET))
    assert await call() == 200


def _solved(issued: dict[str, Any]) -> str:
    """What the ALTCHA widget sends back: base64 of the JSON solution."""
    found = altcha_v1.solve_challenge(
        issued["challenge"], issued["salt"], issued["algorithm"], issued["maxnumber"]
    )
    assert found is not None
    solution = {k: issued[k] for k in ("algorithm", "challenge", "salt", "signature")}
    return base64.b64encode(json.dumps({**solution, "number": found.number}).encode()).decode()


async def test_captcha_rotation_fails_no_challenge(
    settings: Settings, db: Database, keyring: Keyring, frozen_clock: FrozenClock
) -> None:
    before = create_app(settings, database=db, keyring=keyring)
    async with LifespanManager(before):
        payload = _solved(before.state.identity.captcha.challenge())
        kept_for_after_retirement = _solved(before.state.identity.captcha.challenge())
        # The solver is right: the issuing instance accepts a solution made the same way.
        assert await before.state.identity.captcha.verify(
            _solved(before.state.identity.captcha.challenge())
        )
        ring = published(keyring, KeyPurpose.CAPTCHA)
        frozen_clock.advance(DELAY)
        # A second instance (or this one restarted) after the new version activated: the
        # challenge handed out a moment ago must still verify during the grace period.
        after = create_app(settings, database=db, keyring=ring)
        async with LifespanManager(after):
            assert await after.state.identity.captcha.verify(payload)
            # New challenges are signed with version 2 and verify too.
            assert await after.state.identity.captcha.verify(
                _solved(after.state.identity.captcha.challenge())
            )
            # Retiring version 1 ends its challenges at the next keyring refresh, no restart.
            install_keyring(retired(ring, KeyPurpose.CAPTCHA))
            assert not await after.state.identity.captcha.verify(kept_for_after_retirement)
            assert await after.state.identity.captcha.verify(
                _solved(after.state.identity.captcha.challenge())
            )
