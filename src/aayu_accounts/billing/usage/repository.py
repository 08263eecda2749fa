"""Usage events: the idempotent claim and the sums for a period."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.models.usage_event import UsageEvent


async def claim(session: AsyncSession, values: dict[str, object]) -> bool:
    """Insert the event unless its id exists; True when this call stored it.

    ``ON CONFLICT DO NOTHING`` on the primary key: on PostgreSQL a concurrent insert of the
    same id waits for the first transaction and then does nothing, so exactly one counts.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(UsageEvent).values(**values).on_conflict_do_nothing(index_elements=["event_id"])
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


async def used(
    session: AsyncSession, org_id: str, metric: str, start: datetime, end: datetime
) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(UsageEvent.quantity), 0)).where(
            UsageEvent.org_id == org_id,
            UsageEvent.metric == metric,
            UsageEvent.occurred_at >= start,
            UsageEvent.occurred_at < end,
        )
    )
    return int(total or 0)
