"""The strategy's gradual rollout (Phase 4, days 15-21) as schedule steps.

    day 15: NEW_AUTH 10 %
    day 17: NEW_AUTH and NEW_DATABASE 25 %
    day 19: NEW_AUTH and NEW_DATABASE 50 %
    day 21: NEW_AUTH, NEW_DATABASE and BILLING 100 %

``day_zero`` is the start of day 0 of the plan (UTC); each step turns its flag on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aayu_accounts.rollout.flag.schemas import ScheduleStepIn
from aayu_accounts.rollout.flag.snapshot import BILLING, NEW_AUTH, NEW_DATABASE

STRATEGY_STEPS: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (15, 10, (NEW_AUTH,)),
    (17, 25, (NEW_AUTH, NEW_DATABASE)),
    (19, 50, (NEW_AUTH, NEW_DATABASE)),
    (21, 100, (NEW_AUTH, NEW_DATABASE, BILLING)),
)


def strategy_plan(day_zero: datetime) -> dict[str, list[ScheduleStepIn]]:
    if day_zero.tzinfo is None:
        raise ValueError("day_zero must be an aware datetime")
    plan: dict[str, list[ScheduleStepIn]] = {}
    for day, percent, keys in STRATEGY_STEPS:
        for key in keys:
            plan.setdefault(key, []).append(
                ScheduleStepIn(
                    run_at=day_zero + timedelta(days=day), enabled=True, rollout_percent=percent
                )
            )
    return plan
