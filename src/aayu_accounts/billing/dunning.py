"""Dunning: past_due -> grace period -> restricted -> (paid) -> active, with an email to the
clinic's owners and billing members at each step.

The subscription's status comes from the provider; what we add is the clock: when it became
past_due (``past_due_since``) and which step's email went out (``dunning_stage``: ``none``,
``grace``, ``restricted``), so each email goes once however often events repeat. Restriction
itself is decided by the entitlement check from the same fields, so recovery restores access
the moment the status is active again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.actions import AuditAction
from aayu_accounts.audit.service import Actor, record
from aayu_accounts.billing import runtime
from aayu_accounts.billing.subscription import repository as subscriptions
from aayu_accounts.email.service import queue_email
from aayu_accounts.models.organization import Organization
from aayu_accounts.models.subscription import Subscription
from aayu_accounts.models.user import User

RECIPIENT_ROLES = ("owner", "billing")
IN_DUNNING = frozenset({"past_due", "unpaid"})


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency.upper()}"


async def _notify(session: AsyncSession, sub: Subscription, template: str, **context: str) -> int:
    org = await session.get(Organization, sub.org_id)
    link = f"{runtime.current().settings.public_url}/orgs/{sub.org_id}/billing"
    sent = 0
    for user_id in await subscriptions.member_user_ids(session, sub.org_id, RECIPIENT_ROLES):
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            continue
        await queue_email(
            session,
            to=str(user.email),
            template=template,
            context={"org_name": org.name if org else "your clinic", "link": link, **context},
        )
        sent += 1
    return sent


# For the other billing emails (trial ending) sent to the same people in the same way.
money = _money
notify_billing_members = _notify


async def on_status_change(
    session: AsyncSession,
    sub: Subscription,
    old_status: str | None,
    *,
    now: datetime,
    amount_cents: int = 0,
    currency: str = "usd",
) -> None:
    """Start or end dunning after the provider changed the status (already on ``sub``)."""
    if sub.status in IN_DUNNING and old_status not in IN_DUNNING:
        sub.past_due_since = sub.past_due_since or now
        if sub.dunning_stage == "none":
            sub.dunning_stage = "grace"
            grace_until = sub.past_due_since + runtime.current().grace
            await _notify(
                session,
                sub,
                "billing_payment_failed",
                amount=_money(amount_cents, currency),
                grace_until=grace_until.strftime("%Y-%m-%d %H:%M UTC"),
            )
    elif sub.status not in IN_DUNNING and old_status in IN_DUNNING:
        was_stage = sub.dunning_stage
        sub.past_due_since = None
        sub.dunning_stage = "none"
        if sub.status in ("active", "trialing"):
            await _notify(session, sub, "billing_recovered")
            await record(
                session,
                AuditAction.DUNNING_RECOVERED,
                actor=Actor.system("billing"),
                org_id=sub.org_id,
                target_type="subscription",
                target_id=sub.id,
                details={"old_status": old_status, "new_status": sub.status, "stage": was_stage},
            )


async def advance(session: AsyncSession, now: datetime) -> list[str]:
    """Restrict the subscriptions whose grace period ended; returns their org ids."""
    restricted: list[str] = []
    grace = runtime.current().grace
    for sub in await subscriptions.in_dunning(session):
        if sub.past_due_since is None or sub.dunning_stage == "restricted":
            continue
        if now >= sub.past_due_since + grace:
            sub.dunning_stage = "restricted"
            await _notify(session, sub, "billing_restricted")
            await record(
                session,
                AuditAction.DUNNING_RESTRICTED,
                actor=Actor.system("billing"),
                org_id=sub.org_id,
                target_type="subscription",
                target_id=sub.id,
                details={"past_due_since": sub.past_due_since.isoformat()},
            )
            restricted.append(sub.org_id)
    await session.flush()
    return restricted
