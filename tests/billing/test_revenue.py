"""Revenue numbers (Stripe's MRR definition), their metrics, and ``billing report --json``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from prometheus_client import REGISTRY

from aayu_accounts.billing.revenue.service import build_report, export_metrics
from aayu_accounts.db import Database
from aayu_accounts.kit import clock
from aayu_accounts.kit.clock import FrozenClock
from aayu_accounts.models.invoice import Invoice
from aayu_accounts.models.subscription import Subscription
from tests.billing.factories import make_clinic, seed_default_plans
from tests.test_cli import run_cli


def _sub(org_id: str, plan: str, status: str, seats: int, **extra: object) -> Subscription:
    now = clock.now()
    return Subscription(
        org_id=org_id,
        plan_id=plan,
        status=status,
        seats=seats,
        current_period_start=now - timedelta(days=1),
        current_period_end=now + timedelta(days=29),
        cancel_at_period_end=False,
        provider="local",
        provider_version=0,
        dunning_stage="none",
        **extra,
    )


async def test_report_numbers_and_metrics(db: Database, frozen_clock: FrozenClock) -> None:
    now = clock.now()
    async with db.session_scope() as session:
        await seed_default_plans(session)
        orgs = [(await make_clinic(session)).org_id for _ in range(6)]
        session.add_all(
            [
                _sub(orgs[0], "clinic_monthly", "active", 2),  # 7800 a month
                _sub(orgs[1], "clinic_annual", "past_due", 3, past_due_since=now),  # 117000 / 12
                _sub(orgs[2], "solo_monthly", "trialing", 1, trial_end=now + timedelta(days=3)),
                _sub(orgs[3], "solo_monthly", "canceled", 1, canceled_at=now - timedelta(days=3)),
                _sub(
                    orgs[4],
                    "solo_monthly",
                    "active",
                    1,
                    trial_end=now - timedelta(days=20),
                    converted_from_trial_at=now - timedelta(days=20),
                ),  # 4900, converted
                _sub(
                    orgs[5],
                    "solo_monthly",
                    "canceled",
                    1,
                    trial_end=now - timedelta(days=40),
                    canceled_at=now - timedelta(days=35),
                ),  # an unconverted trial, churned long ago
            ]
        )
        await session.flush()
        for index, status in enumerate(["paid", "paid", "paid", "open"]):
            session.add(
                Invoice(
                    org_id=orgs[0],
                    provider_invoice_id=f"in_report_{index}",
                    status=status,
                    billing_reason="subscription_cycle",
                    amount_cents=7800,
                    currency="usd",
                    period_start=now,
                    period_end=now + timedelta(days=30),
                    attempt_count=1,
                )
            )
        session.add(
            Invoice(
                org_id=orgs[0],
                provider_invoice_id="in_report_zero",
                status="paid",
                billing_reason="subscription_create",
                amount_cents=0,
                currency="usd",
                period_start=now,
                period_end=now,
                attempt_count=0,
            )
        )
    async with db.session_scope(write=False) as session:
        report = await build_report(session)
    assert report.mrr_cents == {"usd": 7800 + 117000 // 12 + 4900}
    assert report.arr_cents == {"usd": 12 * (7800 + 9750 + 4900)}
    assert report.paying_subscriptions == 3
    assert report.seats == 2 + 3 + 1
    assert report.subscriptions_by_plan["solo_monthly"] == {"trialing": 1, "active": 1}
    assert report.trials_ended == 2
    assert report.trial_conversion == 0.5
    assert report.canceled_30d == 1
    assert report.churn_30d == round(1 / 4, 4)
    assert (report.invoices_30d, report.failed_invoices_30d) == (4, 1)
    assert report.billing_failure_rate == 0.25

    export_metrics(report)
    assert REGISTRY.get_sample_value("aayu_billing_mrr_cents", {"currency": "usd"}) == 22450
    assert REGISTRY.get_sample_value("aayu_billing_failure_ratio") == 0.25
    assert (
        REGISTRY.get_sample_value(
            "aayu_billing_subscriptions", {"plan": "clinic_annual", "status": "past_due"}
        )
        == 1
    )


def test_billing_report_cli_json(tmp_path: Path) -> None:
    env = {
        "AAYU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "AAYU_VAR_DIR": str(tmp_path / "var"),
        "AAYU_SECRETS_DIR": str(tmp_path / "var" / "secrets"),
    }
    assert run_cli("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    seeded = run_cli("billing", "seed-plans", "--json", cwd=tmp_path, env=env)
    assert seeded.returncode == 0, seeded.stderr
    assert set(json.loads(seeded.stdout)["changed"]) == {
        "solo_monthly",
        "clinic_monthly",
        "clinic_annual",
    }
    result = run_cli("billing", "report", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)  # JSON and nothing else on stdout
    assert body["mrr_cents"] == {}
    assert body["paying_subscriptions"] == 0
    text = run_cli("billing", "report", cwd=tmp_path, env=env)
    assert "MRR (USD): 0.00 USD" in text.stdout
