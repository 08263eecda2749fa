"""After sign-ups through the API, no email, name, TOTP secret, or session address and browser
is stored in plaintext.

Runs on a database of its own (committed for real, then scanned raw: the SQLite file with its
WAL, every PostgreSQL table), so nothing else's rows mix in and nothing is left behind.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.kit.clock import FrozenClock
from tests.fixtures.crypto import assert_no_plaintext
from tests.identity.accounts.conftest import app_factory
from tests.identity.accounts.helpers import Account, signed_up, totp_now, unique_email


async def test_no_personal_field_in_plaintext_after_sign_ups(
    own_database: tuple[AsyncEngine, Settings], keyring: Keyring
) -> None:
    engine, own_settings = own_database
    db = Database(engine)
    secrets: list[str] = []
    accounts: list[Account] = []
    async with app_factory(own_settings, db, keyring)() as client:
        for name in ("Zenobia Quartermaine", "Bartholomew Oyelaran"):
            account = await signed_up(client, db, email=unique_email("zq-person"), full_name=name)
            accounts.append(account)
            start = await client.post("/api/v1/me/mfa/totp", headers=account.auth)
            secret = start.json()["secret"]
            secrets.append(secret)
            confirm = await client.post(
                "/api/v1/me/mfa/totp/confirm",
                json={"code": totp_now(secret)},
                headers=account.auth,
            )
            assert confirm.status_code == 200
            account.token = confirm.json()["token"]  # rotated at the privilege change
            client.cookies.clear()
        # An invitation to an address that has no account yet.
        invited = unique_email("invitee-xq")
        response = await client.post(
            f"/api/v1/orgs/{accounts[0].org_id}/invitations",
            json={"email": invited, "role": "clinician"},
            headers=accounts[0].auth,
        )
        assert response.status_code == 201
    values = [a.email for a in accounts] + [a.full_name for a in accounts] + secrets
    # Local parts and surnames alone must not appear either.
    values += [a.email.split("@")[0] for a in accounts] + ["Quartermaine", "Oyelaran"]
    values.append(invited)
    scanned = await assert_no_plaintext(engine, values)
    assert scanned > 0


FIRST_AGENT = "ZqScribeBrowser/9.7 (sign-in device)"
LATER_AGENT = "ZqScribeBrowser/9.8 (after an update)"
ADDRESS = "203.0.113.77"


async def test_a_sessions_address_and_browser_are_sealed_and_shown_to_their_owner(
    own_database: tuple[AsyncEngine, Settings], keyring: Keyring, frozen_clock: FrozenClock
) -> None:
    # Sealed when the session is issued and when its activity is written (one UPDATE that
    # seals without loading the row); the owner's session list shows them in clear.
    engine, own_settings = own_database
    db = Database(engine)
    application = create_app(own_settings, database=db, keyring=keyring)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=(ADDRESS, 40000))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"User-Agent": FIRST_AGENT},
        ) as client:
            account = await signed_up(client, db)
            listed = await client.get("/api/v1/me/sessions", headers=account.auth)
            assert [(s["ip"], s["user_agent"]) for s in listed.json()] == [(ADDRESS, FIRST_AGENT)]
            frozen_clock.advance(timedelta(seconds=own_settings.session_touch_seconds + 1))
            client.headers["User-Agent"] = LATER_AGENT
            listed = await client.get("/api/v1/me/sessions", headers=account.auth)
            assert [s["user_agent"] for s in listed.json()] == [LATER_AGENT]
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM auth_sessions"))).all()
    assert rows
    stored = b"".join(
        value if isinstance(value, bytes) else str(value).encode() for row in rows for value in row
    )
    for plain in (FIRST_AGENT, LATER_AGENT, ADDRESS, "ZqScribeBrowser"):
        assert plain.encode() not in stored, plain
