"""The subscription service called as a clinic's owner, the way most billing tests drive it
(the API's routes pass the same actor, role and org). Tests about who may call keep their own
calls with other roles."""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.audit.service import Actor
from aayu_accounts.billing.payment_provider.base import PaymentProvider
from aayu_accounts.billing.subscription import service
from aayu_accounts.billing.subscription.proration import ChangePreview
from aayu_accounts.models.subscription import Subscription
from tests.billing.factories import Clinic


class _Caller(TypedDict):
    actor: Actor
    role: str
    org_id: str


def _owner_of(clinic: Clinic) -> _Caller:
    return {"actor": Actor.user(clinic.owner_id), "role": "owner", "org_id": clinic.org_id}


async def subscribe(
    session: AsyncSession,
    provider: PaymentProvider,
    clinic: Clinic,
    *,
    plan_id: str,
    seats: int,
    payment_method: str | None,
    trial: bool = True,
) -> Subscription:
    return await service.create_subscription(
        session,
        provider,
        **_owner_of(clinic),
        plan_id=plan_id,
        seats=seats,
        payment_method=payment_method,
        trial=trial,
    )


async def change(
    session: AsyncSession,
    provider: PaymentProvider,
    clinic: Clinic,
    *,
    plan_id: str | None = None,
    seats: int | None = None,
    cancel_at_period_end: bool | None = None,
    payment_method: str | None = None,
) -> tuple[Subscription, ChangePreview | None]:
    return await service.change_subscription(
        session,
        provider,
        **_owner_of(clinic),
        plan_id=plan_id,
        seats=seats,
        cancel_at_period_end=cancel_at_period_end,
        payment_method=payment_method,
    )
