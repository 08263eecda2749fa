"""Sign-in routing for v2.5 users: what identity's login asks before checking a password.

``NEW_AUTH`` decides, per v2.5 user, whether the password is checked against the v2.5
credential list (the legacy path) or the identity store they were migrated into (the new
path). Either way a successful sign-in is a normal session of the linked identity user, so
every later request looks the same; a rollback flips which check runs, and nobody with a
working v2.5 password loses access. People not in the v2.5 list always take the new path.

Identity's login calls :func:`route_sign_in` with three callbacks of its own:

* ``new_path()``: its usual login (Argon2id, throttling, MFA);
* ``accept(user_id)``: issue a session for that identity user (the v2.5 password matched);
* ``reject()``: its usual "invalid credentials" answer.

A v2.5 user who was not migrated yet has no identity user: the legacy check still runs (same
cost), and the sign-in is refused, because there is no account to open a session on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.rollout.context import RolloutContext
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
    new_path: Callable[[], Awaitable[T]],
    accept: Callable[[str], Awaitable[T]],
    reject: Callable[[], Awaitable[T]],
) -> tuple[T, Decision | None]:
    """Sign in through the path the flags choose; returns the result and the decision."""
    legacy_user = ctx.legacy_credentials.find(identifier)
    if legacy_user is None:
        return await new_path(), None
    subject = legacy_user.subject
    user_id = await repository.user_of_legacy_subject(session, subject)
    decision = ctx.router.decide(Capability.AUTH, subject, has_legacy=True)

    async def legacy() -> T:
        verified = ctx.legacy_credentials.verify(identifier, password)
        if verified is None or user_id is None:
            return await reject()
        return await accept(user_id)

    if user_id is None:
        # Not migrated: the new store cannot know this person yet.
        return await legacy(), decision
    return await ctx.router.serve(decision, new_path, legacy), decision
