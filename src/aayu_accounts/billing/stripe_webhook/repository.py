"""The webhook inbox: insert unless the event id is known."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.kit import clock
from aayu_accounts.models.stripe_event import StripeEvent


async def store(
    session: AsyncSession, *, event_id: str, type_: str, created: int, payload: dict[str, Any]
) -> bool:
    """True when the event is new. A redelivery (same id) changes nothing."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(StripeEvent)
        .values(
            id=event_id,
            type=type_,
            created=created,
            payload=payload,
            status="received",
            received_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


async def get(session: AsyncSession, event_id: str) -> StripeEvent | None:
    return await session.get(StripeEvent, event_id)
