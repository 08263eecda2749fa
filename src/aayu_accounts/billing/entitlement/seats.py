"""Seat enforcement for the identity area: active clinicians may not exceed paid seats.

Contract: ``await ensure_seat_available(session, org_id=, role=)`` before a member gains a
seated role (invitation created or accepted as clinician, role changed to clinician,
reactivation of a clinician). Raises :class:`SeatLimitReached` (409 ``seat_limit``) when every
paid seat is taken; the clinic's owner or billing member raises the seat count with
``PATCH /orgs/{id}/subscription {"seats": n}``. An org without a subscription is not limited
here (its notes are refused by the entitlement check instead).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.billing.errors import SeatLimitReached
from aayu_accounts.billing.subscription import repository as subscriptions
from aayu_accounts.billing.subscription.repository import SEATED_ROLES


@dataclass(frozen=True)
class SeatUsage:
    seats: int | None
    used: int

    @property
    def available(self) -> int | None:
        return None if self.seats is None else max(0, self.seats - self.used)


async def seat_usage(session: AsyncSession, org_id: str) -> SeatUsage:
    sub = await subscriptions.for_org(session, org_id)
    used = await subscriptions.seated_count(session, org_id)
    if sub is None or sub.status in ("canceled", "incomplete_expired"):
        return SeatUsage(None, used)
    return SeatUsage(sub.seats, used)


async def ensure_seat_available(
    session: AsyncSession, *, org_id: str, role: str, adding: int = 1
) -> None:
    if role not in SEATED_ROLES:
        return
    usage = await seat_usage(session, org_id)
    if usage.seats is not None and usage.used + adding > usage.seats:
        raise SeatLimitReached(
            f"All {usage.seats} paid seats are taken; raise the seat count first.",
            extra={"seats": usage.seats, "used": usage.used},
        )
