"""Sign-ins read, verify, then write: no sign-in holds the database across its Argon2id hash.

On SQLite a write transaction holds the one write lock; a sign-in that opened it before
verifying the password would make every other sign-in queue behind its hash (and, under a
burst, run into ``database is locked``). Here 16 sign-ins run at once against a database that
really commits, and every one of them must reach its password verification before any is
allowed to finish it: a count that can only reach 16 when none of them is holding the lock
(or a pooled connection) while it hashes.
"""

from __future__ import annotations

import asyncio

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from aayu_accounts.app import create_app
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.models.auth_session import AuthSession
from tests.identity.accounts.helpers import Account, login, register, verify

SIGN_INS = 16


async def test_sixteen_concurrent_sign_ins_verify_together_and_all_succeed(
    own_database: tuple[AsyncEngine, Settings], keyring: Keyring
) -> None:
    engine, own_settings = own_database
    own_db = Database(engine)
    application = create_app(own_settings, database=own_db, keyring=keyring)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            accounts: list[Account] = []
            for index in range(SIGN_INS):
                account = await register(client, full_name=f"Parallel Person {index}")
                await verify(client, own_db, account)
                accounts.append(account)

            # The real verification, entered by each sign-in; it proceeds only once all 16
            # have entered. A sign-in holding the write lock during its verify would keep the
            # others from ever getting there (they would wait on the lock, not on the hash).
            hasher = application.state.identity.hasher
            real_verify = hasher.verify
            entered = 0
            everyone_in = asyncio.Event()

            async def verify_together(stored_hash: str, password: str) -> bool:
                nonlocal entered
                entered += 1
                if entered == SIGN_INS:
                    everyone_in.set()
                await asyncio.wait_for(everyone_in.wait(), timeout=30)
                return bool(await real_verify(stored_hash, password))

            hasher.verify = verify_together
            try:
                responses = await asyncio.gather(*(login(client, a) for a in accounts))
            finally:
                del hasher.verify

    assert entered == SIGN_INS
    assert [r.status_code for r in responses] == [200] * SIGN_INS, [
        r.text[:200] for r in responses if r.status_code != 200
    ]
    assert all("database is locked" not in r.text for r in responses)
    async with own_db.session_scope(write=False) as session:
        sessions = await session.scalar(select(func.count()).select_from(AuthSession))
    assert sessions == SIGN_INS
