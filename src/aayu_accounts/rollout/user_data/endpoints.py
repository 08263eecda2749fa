"""``/api/v1/me/data`` (API.md, *User data*)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response, status

from aayu_accounts.audit.service import Actor
from aayu_accounts.db import WriteSession
from aayu_accounts.identity.deps import CurrentUser
from aayu_accounts.rollout.context import RolloutContext
from aayu_accounts.rollout.user_data import service
from aayu_accounts.rollout.user_data.schemas import (
    KEY_REGEX,
    DocumentKeys,
    ImportResult,
    LocalStorageSnapshot,
)

router = APIRouter(prefix="/api/v1/me/data", tags=["user data"])

KeyPath = Annotated[str, Path(pattern=KEY_REGEX)]


def _context(request: Request) -> RolloutContext:
    context: RolloutContext = request.app.state.rollout
    return context


# Reads take the write session too: a fallback or the savepoint of the new path needs a
# transaction that can be rolled back to, and a read is one statement either way.
@router.get("", summary="The keys of the caller's documents")
async def list_keys(request: Request, session: WriteSession, user: CurrentUser) -> DocumentKeys:
    owner = await service.resolve_owner(session, user.user_id)
    return DocumentKeys(keys=await service.list_keys(session, _context(request), owner))


@router.get("/{key}", summary="One document", responses={404: {"description": "No such key"}})
async def get_document(
    key: KeyPath, request: Request, session: WriteSession, user: CurrentUser
) -> dict[str, Any]:
    owner = await service.resolve_owner(session, user.user_id)
    return await service.get_document(session, _context(request), owner, key)


@router.put(
    "/{key}",
    summary="Store a document (a JSON object of at most 64 KiB)",
    responses={413: {"description": "Document too large"}},
)
async def put_document(
    key: KeyPath,
    document: Annotated[dict[str, Any], Body()],
    request: Request,
    session: WriteSession,
    user: CurrentUser,
) -> dict[str, Any]:
    owner = await service.resolve_owner(session, user.user_id)
    return await service.put_document(
        session, _context(request), owner, key, document, actor=Actor.user(user.user_id)
    )


@router.delete("/{key}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a document")
async def delete_document(
    key: KeyPath, request: Request, session: WriteSession, user: CurrentUser
) -> Response:
    owner = await service.resolve_owner(session, user.user_id)
    await service.delete_document(
        session, _context(request), owner, key, actor=Actor.user(user.user_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/import", summary="Import a whole LocalStorage snapshot (idempotent)")
async def import_snapshot(
    snapshot: LocalStorageSnapshot, request: Request, session: WriteSession, user: CurrentUser
) -> ImportResult:
    owner = await service.resolve_owner(session, user.user_id)
    imported = await service.import_snapshot(
        session, _context(request), owner, snapshot.root, actor=Actor.user(user.user_id)
    )
    return ImportResult(imported=imported)
