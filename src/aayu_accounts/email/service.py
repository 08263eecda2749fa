"""Queue an email in the caller's transaction; a job delivers it after commit.

Rolling the transaction back drops the email with it, so nobody is told about a change that
did not happen (DESIGN rule 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.email import repository
from aayu_accounts.email.rendering import render
from aayu_accounts.email.tasks import SEND_JOB
from aayu_accounts.jobs import enqueue
from aayu_accounts.models.outbox_email import OutboxEmail


async def queue_email(
    session: AsyncSession, *, to: str, template: str, context: dict[str, Any]
) -> str:
    """Render ``template`` for ``to`` and enqueue its delivery; returns the outbox id."""
    rendered = render(template, context)
    email = await repository.add(
        session,
        OutboxEmail(
            to_address=to,
            subject=rendered.subject,
            body_text=rendered.body,
            template=template,
            status="pending",
        ),
    )
    await enqueue(session, SEND_JOB, {"outbox_id": email.id})
    return email.id


async def recent(session: AsyncSession, limit: int = 50) -> Sequence[OutboxEmail]:
    """The newest messages, for the development console's outbox page."""
    return await repository.latest(session, limit)


async def message(session: AsyncSession, email_id: str) -> OutboxEmail | None:
    """One outbox message (the development console's message view)."""
    return await repository.get(session, email_id)
