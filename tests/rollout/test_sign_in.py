"""Sign-in routing of v2.5 users by NEW_AUTH, with FALLBACK, through a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from aayu_accounts.db import Database
from aayu_accounts.errors import Unauthenticated
from aayu_accounts.identity.password.hasher import PasswordHasher
from aayu_accounts.models.legacy_user_link import LegacyUserLink
from aayu_accounts.models.user import User
from aayu_accounts.rollout.context import RolloutContext
from aayu_accounts.rollout.flag.snapshot import FlagDefinition, FlagSnapshot
from aayu_accounts.rollout.flag.store import FlagStore
from aayu_accounts.rollout.legacy.credentials import (
    LegacyCredentials,
    legacy_subject,
    parse,
)
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.outcomes import RoutePath
from aayu_accounts.rollout.path_router import PathRouter
from aayu_accounts.rollout.sign_in import route_sign_in

CREDENTIALS = """{"users": [
    {"username": "drmehta", "password": "scribe-2024"},
    {"username": "drnew", "password": "scribe-2023", "email": "new@clinic.example"}
]}"""
# Cheap parameters: these tests are about routing, not Argon2's cost.
HASHER = PasswordHasher(memory_kib=1024, time_cost=1, parallelism=1)


def context(tmp_path: Path, *flags: FlagDefinition) -> RolloutContext:
    store = FlagStore()
    store.install(FlagSnapshot.build(3, flags), source="test")
    return RolloutContext(
        router=PathRouter(store),
        legacy_credentials=LegacyCredentials.from_users(parse(CREDENTIALS)),
        legacy_store=LegacyDocumentStore(tmp_path),
    )


async def migrated_user(db: Database) -> str:
    async with db.session_scope() as session:
        user = User(email="mehta@clinic.example", full_name="Dr Mehta", password_hash="x")
        session.add(user)
        await session.flush()
        session.add(LegacyUserLink(legacy_subject=legacy_subject("drmehta"), user_id=user.id))
        return user.id


class Identity:
    """Stands for identity's login callbacks; records which ran."""

    def __init__(self, *, new_path_works: bool = True) -> None:
        self.calls: list[str] = []
        self.new_path_works = new_path_works

    async def new_path(self) -> str:
        self.calls.append("new")
        if not self.new_path_works:
            raise ConnectionError("identity store unreachable")
        return "session:new"

    async def accept(self, user_id: str) -> str:
        self.calls.append("legacy-accept")
        return f"session:{user_id}"

    async def reject(self) -> str:
        raise Unauthenticated("invalid credentials")


async def sign_in(
    db: Database,
    ctx: RolloutContext,
    identity: Identity,
    password: str,
    identifier: str = "drmehta",
) -> str:
    async with db.session_scope() as session:
        result, _ = await route_sign_in(
            session,
            ctx,
            identifier,
            password,
            hasher=HASHER,
            new_path=identity.new_path,
            accept=identity.accept,
            reject=identity.reject,
        )
    return result


async def test_flag_off_checks_the_v25_password(db: Database, tmp_path: Path) -> None:
    user_id = await migrated_user(db)
    identity = Identity()
    assert await sign_in(db, context(tmp_path), identity, "scribe-2024") == f"session:{user_id}"
    assert identity.calls == ["legacy-accept"]
    with pytest.raises(Unauthenticated):
        await sign_in(db, context(tmp_path), identity, "wrong")


async def test_flag_on_uses_the_new_store_and_falls_back(db: Database, tmp_path: Path) -> None:
    await migrated_user(db)
    new_auth = FlagDefinition("NEW_AUTH", enabled=True, rollout_percent=100)
    fallback = FlagDefinition("FALLBACK", enabled=True, rollout_percent=100)
    identity = Identity()
    assert await sign_in(db, context(tmp_path, new_auth), identity, "x") == "session:new"
    broken = Identity(new_path_works=False)
    ctx = context(tmp_path, new_auth, fallback)
    assert (await sign_in(db, ctx, broken, "scribe-2024")).startswith("session:")
    assert broken.calls == ["new", "legacy-accept"]
    async with db.session_scope() as session:
        _, decision = await route_sign_in(
            session,
            ctx,
            "drmehta",
            "scribe-2024",
            hasher=HASHER,
            new_path=broken.new_path,
            accept=broken.accept,
            reject=broken.reject,
        )
    assert decision is not None
    assert decision.path is RoutePath.NEW


async def test_people_outside_the_v25_list_always_use_the_new_store(
    db: Database, tmp_path: Path
) -> None:
    identity = Identity()
    async with db.session_scope() as session:
        result, decision = await route_sign_in(
            session,
            context(tmp_path),
            "someone@clinic.example",
            "pw",
            hasher=HASHER,
            new_path=identity.new_path,
            accept=identity.accept,
            reject=identity.reject,
        )
    assert result == "session:new"
    assert decision is None


async def test_a_first_sign_in_is_checked_against_v25_whatever_the_flags(
    db: Database, tmp_path: Path
) -> None:
    # Not migrated yet: the new store does not know the password, so NEW_AUTH at 100 % still
    # checks the v2.5 list, and the match creates the account (just-in-time migration).
    new_auth = FlagDefinition("NEW_AUTH", enabled=True, rollout_percent=100)
    identity = Identity()
    ctx = context(tmp_path, new_auth)

    async def first(password: str) -> str:
        return await sign_in(db, ctx, identity, password, identifier="new@clinic.example")

    with pytest.raises(Unauthenticated):
        await first("wrong")
    result = await first("scribe-2023")
    assert identity.calls == ["legacy-accept"]
    async with db.session_scope(write=False) as session:
        link = await session.get(LegacyUserLink, legacy_subject("drnew"))
        assert link is not None
        assert result == f"session:{link.user_id}"
    # Migrated now: from here on NEW_AUTH decides, and at 100 % that is the new store.
    assert await first("anything") == "session:new"
    assert identity.calls == ["legacy-accept", "new"]
