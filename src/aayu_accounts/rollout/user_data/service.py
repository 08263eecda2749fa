"""User documents, served by the store the flags choose, with fallback and shadow writes.

For each request the owner is resolved to a data *subject*: the legacy subject of a v2.5
user who was migrated (they have a legacy store to go back to), else the user's id (new-store
only: always the database). The path router picks the store; with SHADOW_WRITES on, each
write is then copied to the other store by a job after commit.

New-path (database) work runs in a savepoint, so a failure there leaves the request's
transaction usable when FALLBACK serves the request from the legacy store.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.rollout.context import RolloutContext
from aayu_accounts.rollout.flag.snapshot import SHADOW_WRITES
from aayu_accounts.rollout.outcomes import Capability, RoutePath
from aayu_accounts.rollout.path_router import Decision
from aayu_accounts.rollout.shadow.tasks import enqueue_shadow_copy
from aayu_accounts.rollout.user_data import repository
from aayu_accounts.rollout.user_data.errors import DocumentNotFound, DocumentTooLarge
from aayu_accounts.rollout.user_data.repository import DatabaseDocumentStore
from aayu_accounts.rollout.user_data.schemas import MAX_DOCUMENT_BYTES

T = TypeVar("T")


@dataclass(frozen=True)
class Owner:
    user_id: str
    subject: str
    has_legacy: bool


async def resolve_owner(session: AsyncSession, user_id: str) -> Owner:
    legacy = await repository.legacy_subject_of(session, user_id)
    if legacy is not None:
        return Owner(user_id=user_id, subject=legacy, has_legacy=True)
    return Owner(user_id=user_id, subject=user_id, has_legacy=False)


def _check_size(document: dict[str, Any]) -> None:
    size = len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(f"A document is at most {MAX_DOCUMENT_BYTES} bytes of JSON.")


class _Served:
    """Which store actually served (the decided one, or legacy after a fallback)."""

    path: RoutePath = RoutePath.LEGACY


async def _route(
    session: AsyncSession,
    ctx: RolloutContext,
    owner: Owner,
    on_new: Callable[[DatabaseDocumentStore], Awaitable[T]],
    on_legacy: Callable[[], Awaitable[T]],
    *,
    served: _Served | None = None,
) -> tuple[T, Decision]:
    decision = ctx.router.decide(Capability.DOCUMENTS, owner.subject, has_legacy=owner.has_legacy)
    tracker = served or _Served()

    async def new() -> T:
        async with session.begin_nested():
            result = await on_new(DatabaseDocumentStore(session))
        tracker.path = RoutePath.NEW
        return result

    async def legacy() -> T:
        result = await on_legacy()
        tracker.path = RoutePath.LEGACY
        return result

    result = await ctx.router.serve(decision, new, legacy if owner.has_legacy else None)
    return result, decision


async def list_keys(session: AsyncSession, ctx: RolloutContext, owner: Owner) -> list[str]:
    async def on_new(store: DatabaseDocumentStore) -> list[str]:
        return await store.list_keys(owner.subject)

    async def on_legacy() -> list[str]:
        return await ctx.legacy_store.list_keys(owner.subject)

    keys, _ = await _route(session, ctx, owner, on_new, on_legacy)
    return keys


async def get_document(
    session: AsyncSession, ctx: RolloutContext, owner: Owner, key: str
) -> dict[str, Any]:
    async def on_new(store: DatabaseDocumentStore) -> dict[str, Any] | None:
        return await store.get(owner.subject, key)

    async def on_legacy() -> dict[str, Any] | None:
        return await ctx.legacy_store.get(owner.subject, key)

    document, _ = await _route(session, ctx, owner, on_new, on_legacy)
    if document is None:
        raise DocumentNotFound("There is no document with that key.")
    return document


async def _after_write(
    session: AsyncSession, ctx: RolloutContext, owner: Owner, key: str, served: _Served
) -> None:
    if not owner.has_legacy:
        return
    snapshot = ctx.router.flags.snapshot
    if snapshot.is_enabled(SHADOW_WRITES, user_id=owner.subject):
        await enqueue_shadow_copy(
            session,
            subject=owner.subject,
            key=key,
            source=served.path,
            legacy_root=ctx.legacy_store.root,
        )


async def put_document(
    session: AsyncSession,
    ctx: RolloutContext,
    owner: Owner,
    key: str,
    document: dict[str, Any],
    *,
    actor: Actor,
) -> dict[str, Any]:
    _check_size(document)
    served = _Served()

    async def on_new(store: DatabaseDocumentStore) -> None:
        await store.put(owner.subject, key, document)

    async def on_legacy() -> None:
        await ctx.legacy_store.put(owner.subject, key, document)

    await _route(session, ctx, owner, on_new, on_legacy, served=served)
    await _after_write(session, ctx, owner, key, served)
    await record(
        session,
        AuditAction.USER_DOCUMENT_WRITTEN,
        actor=actor,
        target_type="user_document",
        target_id=key,
        details={"store": served.path.value},
    )
    return document


async def delete_document(
    session: AsyncSession, ctx: RolloutContext, owner: Owner, key: str, *, actor: Actor
) -> None:
    served = _Served()

    async def on_new(store: DatabaseDocumentStore) -> bool:
        return await store.delete(owner.subject, key)

    async def on_legacy() -> bool:
        return await ctx.legacy_store.delete(owner.subject, key)

    existed, _ = await _route(session, ctx, owner, on_new, on_legacy, served=served)
    await _after_write(session, ctx, owner, key, served)
    if existed:
        await record(
            session,
            AuditAction.USER_DOCUMENT_DELETED,
            actor=actor,
            target_type="user_document",
            target_id=key,
            details={"store": served.path.value},
        )


async def import_snapshot(
    session: AsyncSession,
    ctx: RolloutContext,
    owner: Owner,
    snapshot: dict[str, dict[str, Any]],
    *,
    actor: Actor,
) -> int:
    """Store every document of a LocalStorage snapshot; importing it again changes nothing."""
    for document in snapshot.values():
        _check_size(document)
    served = _Served()

    async def on_new(store: DatabaseDocumentStore) -> None:
        for key, document in snapshot.items():
            await store.put(owner.subject, key, document)

    async def on_legacy() -> None:
        for key, document in snapshot.items():
            await ctx.legacy_store.put(owner.subject, key, document)

    await _route(session, ctx, owner, on_new, on_legacy, served=served)
    for key in snapshot:
        await _after_write(session, ctx, owner, key, served)
    await record(
        session,
        AuditAction.USER_DOCUMENTS_IMPORTED,
        actor=actor,
        target_type="user",
        target_id=owner.user_id,
        details={"count": len(snapshot), "store": served.path.value},
    )
    return len(snapshot)
