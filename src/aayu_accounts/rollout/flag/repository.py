"""Every query on the flag tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.kit import clock
from aayu_accounts.models.feature_flag import FeatureFlag
from aayu_accounts.models.flag_config_state import SINGLETON_ID, FlagConfigState
from aayu_accounts.models.flag_schedule_step import FlagScheduleStep


async def list_flags(session: AsyncSession) -> Sequence[FeatureFlag]:
    return (await session.scalars(select(FeatureFlag).order_by(FeatureFlag.key))).all()


async def get_flag(
    session: AsyncSession, key: str, *, for_update: bool = False
) -> FeatureFlag | None:
    query = select(FeatureFlag).where(FeatureFlag.key == key)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def config_version(session: AsyncSession) -> int:
    version = await session.scalar(
        select(FlagConfigState.version).where(FlagConfigState.id == SINGLETON_ID)
    )
    return int(version or 0)


async def bump_config_version(session: AsyncSession) -> int:
    """Increment the global version in the caller's transaction; returns the new value.

    The UPDATE takes the row lock, so concurrent changes are serialized and each gets its own
    version number.
    """
    result = await session.execute(
        update(FlagConfigState)
        .where(FlagConfigState.id == SINGLETON_ID)
        .values(version=FlagConfigState.version + 1, updated_at=clock.now())
        .returning(FlagConfigState.version)
    )
    version = result.scalar_one_or_none()
    if version is None:
        session.add(FlagConfigState(id=SINGLETON_ID, version=1, updated_at=clock.now()))
        await session.flush()
        return 1
    return int(version)


async def all_steps(session: AsyncSession) -> Sequence[FlagScheduleStep]:
    query = select(FlagScheduleStep).order_by(FlagScheduleStep.run_at)
    return (await session.scalars(query)).all()


async def steps_of(session: AsyncSession, key: str) -> Sequence[FlagScheduleStep]:
    return (
        await session.scalars(
            select(FlagScheduleStep)
            .where(FlagScheduleStep.flag_key == key)
            .order_by(FlagScheduleStep.run_at)
        )
    ).all()


async def pending_steps_of(session: AsyncSession, key: str) -> Sequence[FlagScheduleStep]:
    return (
        await session.scalars(
            select(FlagScheduleStep)
            .where(FlagScheduleStep.flag_key == key, FlagScheduleStep.applied_at.is_(None))
            .order_by(FlagScheduleStep.run_at)
        )
    ).all()


async def due_steps(session: AsyncSession, now: datetime) -> Sequence[FlagScheduleStep]:
    return (
        await session.scalars(
            select(FlagScheduleStep)
            .where(FlagScheduleStep.applied_at.is_(None), FlagScheduleStep.run_at <= now)
            .order_by(FlagScheduleStep.run_at, FlagScheduleStep.flag_key)
            .with_for_update(skip_locked=True)
        )
    ).all()
