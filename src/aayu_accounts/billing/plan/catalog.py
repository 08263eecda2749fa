"""The plan catalog from configuration: built in, or ``AAYU_BILLING_PLANS_FILE`` (JSON list).

Prices are integer minor units. Editing the catalog and restarting (or running
``aayu-accounts billing seed-plans``) updates the database rows; a plan removed from the
catalog is deactivated, never deleted, because subscriptions still refer to it.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from aayu_accounts.config import Settings

# Features the entitlement check knows. sign_in and data_export are never restricted.
BASE_FEATURES = ["notes", "templates", "data_export"]
CLINIC_FEATURES = [*BASE_FEATURES, "team", "audit_export"]


class PlanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    name: str
    interval: Literal["month", "year"]
    amount_cents: int = Field(ge=0)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    per_seat: bool
    trial_days: int = Field(default=0, ge=0, le=730)
    notes_per_seat: int = Field(ge=0, description="Notes included per seat per month")
    max_seats: int | None = Field(default=None, ge=1)
    features: list[str]
    stripe_price_id: str | None = None


DEFAULT_PLANS: list[PlanConfig] = [
    PlanConfig(
        id="solo_monthly",
        name="Solo",
        interval="month",
        amount_cents=4900,
        currency="usd",
        per_seat=False,
        trial_days=14,
        notes_per_seat=300,
        max_seats=1,
        features=BASE_FEATURES,
    ),
    PlanConfig(
        id="clinic_monthly",
        name="Clinic",
        interval="month",
        amount_cents=3900,
        currency="usd",
        per_seat=True,
        trial_days=14,
        notes_per_seat=400,
        features=CLINIC_FEATURES,
    ),
    PlanConfig(
        id="clinic_annual",
        name="Clinic (annual)",
        interval="year",
        # Two months free against twelve monthly payments.
        amount_cents=39000,
        currency="usd",
        per_seat=True,
        trial_days=14,
        notes_per_seat=400,
        features=CLINIC_FEATURES,
    ),
]

_PLANS = TypeAdapter(list[PlanConfig])


def load_catalog(settings: Settings) -> list[PlanConfig]:
    if settings.billing_plans_file is None:
        return list(DEFAULT_PLANS)
    return _PLANS.validate_python(json.loads(settings.billing_plans_file.read_text("utf-8")))
