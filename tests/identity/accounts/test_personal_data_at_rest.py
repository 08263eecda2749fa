"""After sign-ups through the API, no email, name or TOTP secret is stored in plaintext.

Runs on a database of its own (committed for real, then scanned raw: the SQLite file with its
WAL, every PostgreSQL table), so nothing else's rows mix in and nothing is left behind.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
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
