"""The development outbox: the emails the service queued (verification links, invitations,
dunning notices), readable in the browser when no SMTP server is wired up.

Platform administrators only (MFA, as every operations page), and never in production: the
messages carry live links and personal data. Read through the email service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.config import Settings
from aayu_accounts.console.page import PlatformAdminPage, read, render
from aayu_accounts.email import service as email_service
from aayu_accounts.errors import NotFound
from aayu_accounts.models.outbox_email import OutboxEmail

router = APIRouter()


@dataclass(frozen=True)
class Message:
    id: str
    to: str
    subject: str
    template: str
    status: str
    created_at: datetime
    sent_at: datetime | None
    body: str

    @classmethod
    def of(cls, email: OutboxEmail) -> Message:
        return cls(
            email.id,
            email.to_address or "",
            email.subject,
            email.template,
            email.status,
            email.created_at,
            email.sent_at,
            email.body_text or "",
        )


def _available(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.is_production:
        raise NotFound()


@router.get("/outbox")
async def outbox_page(ctx: PlatformAdminPage, request: Request) -> Response:
    _available(request)

    async def work(session: AsyncSession) -> list[Message]:
        return [Message.of(e) for e in await email_service.recent(session, limit=100)]

    return render(request, "outbox/list.html", {"messages": await read(request, work)})


@router.get("/outbox/{email_id}")
async def message_page(ctx: PlatformAdminPage, request: Request, email_id: str) -> Response:
    _available(request)

    async def work(session: AsyncSession) -> Message | None:
        email = await email_service.message(session, email_id[:64])
        return Message.of(email) if email is not None else None

    message = await read(request, work)
    if message is None:
        raise NotFound()
    return render(request, "outbox/message.html", {"message": message})
