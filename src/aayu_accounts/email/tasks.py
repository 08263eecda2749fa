"""The ``email.send`` job: deliver one outbox message, at least once, idempotently."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.email import repository, sender
from aayu_accounts.jobs import job_handler
from aayu_accounts.kit import clock

log = structlog.get_logger(__name__)

SEND_JOB = "email.send"


@job_handler(SEND_JOB, max_attempts=10)
async def send_outbox_email(session: AsyncSession, payload: dict[str, Any]) -> None:
    email = await repository.get(session, str(payload["outbox_id"]))
    if email is None or email.status in ("sent", "local"):
        return  # delivered by an earlier run of this job (delivery is at least once)
    transport, from_address = sender.current()
    email.attempts += 1
    message = sender.build_message(
        sender=from_address,
        to=email.to_address or "",
        subject=email.subject,
        body=email.body_text or "",
    )
    delivered = await transport.deliver(message)
    email.status = "sent" if delivered else "local"
    email.sent_at = clock.now() if delivered else None
    await session.flush()
    log.info("email.processed", outbox_id=email.id, template=email.template, status=email.status)
