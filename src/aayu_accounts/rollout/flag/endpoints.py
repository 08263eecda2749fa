"""``/api/v1/admin/flags``: platform administrators read and change flags (API.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from aayu_accounts.audit.service import Actor
from aayu_accounts.db import ReadSession, WriteSession
from aayu_accounts.identity.deps import PLATFORM_ADMIN_RESPONSES, PlatformAdmin
from aayu_accounts.rollout.flag import service
from aayu_accounts.rollout.flag.schemas import FlagUpdate, FlagView

router = APIRouter(
    prefix="/api/v1/admin/flags", tags=["operations"], responses=PLATFORM_ADMIN_RESPONSES
)

KeyPath = Annotated[str, Path(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")]


@router.get("", summary="Every flag with its rollout state")
async def list_flags(session: ReadSession, _admin: PlatformAdmin) -> list[FlagView]:
    return await service.list_flags(session)


@router.get("/{key}", summary="One flag", responses={404: {"description": "No such flag"}})
async def get_flag(key: KeyPath, session: ReadSession, _admin: PlatformAdmin) -> FlagView:
    return await service.get_flag(session, key)


@router.put(
    "/{key}",
    summary="Change (or create) a flag; every instance applies it within a second",
    responses={422: {"description": "Invalid change or dependency"}},
)
async def put_flag(
    key: KeyPath, change: FlagUpdate, session: WriteSession, admin: PlatformAdmin
) -> FlagView:
    return await service.update_flag(session, key, change, actor=Actor.user(admin.user_id))
