"""Sign-in routing for v2.5 users: what identity's login asks before checking a password.

``NEW_AUTH`` decides, per v2.5 user, whether the password is checked against the v2.5
credential list (the legacy path) or the identity store they were migrated into (the new
path). Either way a successful sign-in is a normal session of the linked identity user, so
every later request looks the same; a rollback flips which check runs, and nobody with a
working v2.5 password loses access. People not in the v2.5 list always take the new path.

Identity's login calls :func:`route_sign_in` with three callbacks of its own:

* ``new_path()``: its usual login (Argon2id, throttling, MFA);
* ``accept(user_id)``: issue a session for that identity user (the v2.5 password matched);
* ``reject()``: its usual "invalid credentials" answer;

and its password hasher, for a first sign-in that creates the account.

A v2.5 user who was not migrated yet has no identity user: their first sign-in is checked
against the v2.5 list whatever the flags (the only place their password is known), and when it
matches, their account is created there and then, as ``migrate legacy-users`` would have made
it (just-in-time migration, see ``legacy_migration.migrate_at_sign_in``). A v2.5 user the
command would skip (no email, or an address another account owns) is refused, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.db import read_before_writing
from aayu_accounts.identity.password.hasher import PasswordHasher
from aayu_accounts.observability import metrics
from aayu_accounts.rollout.context import RolloutContext
from aayu_accounts.rollout.legacy_migration.service import migrate_at_sign_in, migrated_share
from aayu_accounts.rollout.outcomes import Capability
from aayu_accounts.rollout.path_router import Decision
from aayu_accounts.rollout.user_data import repository

T = TypeVar("T")


async def route_sign_in(
    session: AsyncSession,
    ctx: RolloutContext,
    identifier: str,
    password: str,
    *,
    hasher: PasswordHasher,
    new_path: Callable[[], Awaitable[T]],
    accept: Callable[[str], Awaitable[T]],
    reject: Callable[[], Awaitable[T]],
) -> tuple[T, Decision | None]:
    """Sign in through the path the flags choose; returns the result and the decision."""
    legacy_user = ctx.legacy_credentials.find(identifier)
    if legacy_user is None:
        return await new_path(), None
    subject = legacy_user.subject
    # Read and released: a first sign-in hashes the password before it writes (see
    # ``migrate_at_sign_in``), and a refusal costs an Argon2id check, neither under a lock.
    user_id = await read_before_writing(
        session, lambda: repository.user_of_legacy_subject(session, subject)
    )
    decision = ctx.router.decide(Capability.AUTH, subject, has_legacy=True)

    async def legacy() -> T:
        verified = ctx.legacy_credentials.verify(identifier, password)
        if verified is None:
            return await reject()
        account = user_id
        if account is None:
            account = await migrate_at_sign_in(session, hasher, verified, password)
            if account is not None:
                users = ctx.legacy_credentials.users()
                metrics.LEGACY_USERS_MIGRATED.set(await migrated_share(session, users))
        if account is None:
            return await reject()
        return await accept(account)

    if user_id is None:
        # Not migrated: the new store cannot know this person yet.
        return await legacy(), decision
    return await ctx.router.serve(decision, new_path, legacy), decision
