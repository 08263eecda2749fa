"""Fixtures of the attack suite: cheap Argon2 and ALTCHA, an HTTPS client, accounts in two
clinics, and the route table with sample path parameters."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from tests.fixtures.routes import ApiRoute, api_routes
from tests.identity.accounts.helpers import Account, invite_and_join, login, register, verify

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
_PARAM = re.compile(r"\{([a-z_]+)(?::[a-z]+)?\}")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The attack suite signs many people up: Argon2 at 1 MiB / t=1 and light ALTCHA work, as in
    # tests/identity/accounts. The enumeration timing test compares ratios, never absolute times.
    return settings.model_copy(
        update={"argon2_memory_kib": 1024, "argon2_time_cost": 1, "altcha_max_number": 5000}
    )


@pytest_asyncio.fixture(loop_scope="session")
async def app(settings: Settings, db: Database, keyring: Keyring) -> AsyncIterator[FastAPI]:
    # The sweeps send hundreds of requests from one address: the API-wide rate limit (tested in
    # tests/api_security) is lifted so it does not answer before the check under test. The
    # sign-in, reset and MFA throttles of identity stay as configured.
    application = create_app(settings, database=db, keyring=keyring)
    application.state.api_security_settings = ApiSecuritySettings(
        rate_limit_default="100000/minute"
    )
    async with LifespanManager(application):
        yield application


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # HTTPS: outside development the session cookie is Secure and is not sent over http.
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def signed_in(client: httpx.AsyncClient, db: Database, **kwargs: object) -> Account:
    """Registered, verified, signed in with a bearer token; the client keeps no cookie."""
    account = await register(client, **kwargs)  # type: ignore[arg-type]
    await verify(client, db, account)
    response = await login(client, account)
    assert response.status_code == 200, response.text
    body = response.json()
    account.token = body["token"]
    account.user_id = body["user"]["id"]
    account.org_id = body["user"]["memberships"][0]["org_id"]
    client.cookies.clear()
    return account


async def cookie_signed_in(client: httpx.AsyncClient, db: Database) -> Account:
    """Signed in with the session and CSRF cookies kept by ``client``."""
    account = await register(client)
    await verify(client, db, account)
    response = await login(client, account)
    assert response.status_code == 200, response.text
    account.token = response.json()["token"]
    account.user_id = response.json()["user"]["id"]
    account.org_id = response.json()["user"]["memberships"][0]["org_id"]
    assert client.cookies.get("aayu_session") == account.token
    return account


@pytest_asyncio.fixture(loop_scope="session")
async def two_clinics(client: httpx.AsyncClient, db: Database) -> tuple[Account, Account, Account]:
    """(owner of clinic A, a clinician of clinic A, owner of clinic B)."""
    owner_a = await signed_in(client, db, org_name="Lotus Family Clinic")
    member_a = await invite_and_join(client, db, owner_a, "clinician")
    owner_b = await signed_in(client, db, org_name="Banyan Health Centre")
    return owner_a, member_a, owner_b


def routes(app: FastAPI) -> list[ApiRoute]:
    return sorted(api_routes(app), key=lambda r: r.path)


def fill_path(template: str, values: dict[str, str]) -> str:
    """The template with each ``{name}`` replaced by ``values[name]`` or a fresh UUID."""
    return _PARAM.sub(lambda m: values.get(m.group(1), str(uuid.uuid4())), template)


def path_parameters(template: str) -> list[str]:
    return _PARAM.findall(template)
