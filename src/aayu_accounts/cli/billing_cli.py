"""``aayu-accounts billing report|seed-plans|tick``.

``report`` prints the revenue numbers (MRR as Stripe counts it, ARR, subscriptions by plan,
seats, trial conversion, 30-day churn, billing failure rate); ``--json`` prints one JSON
object on stdout and nothing else there. The same numbers are exported as metrics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from aayu_accounts.billing import dunning, runtime
from aayu_accounts.billing.entitlement import cache as entitlement_cache
from aayu_accounts.billing.payment_provider.factory import get_provider
from aayu_accounts.billing.plan.catalog import load_catalog
from aayu_accounts.billing.plan.service import seed_plans
from aayu_accounts.billing.revenue.service import RevenueReport, build_report
from aayu_accounts.billing.subscription.service import renew_due
from aayu_accounts.cli.common import emit_json, run_with_db, settings
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database
from aayu_accounts.kit import clock

app = typer.Typer(help="Plans, renewals and revenue.", no_args_is_help=True)

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only")]


def _run(work: Callable[[Database], Awaitable[T]]) -> T:
    current = settings()
    runtime.configure(current)

    async def runner(db: Database) -> T:
        # Dunning emails carry encrypted addresses: the keyring must be loaded.
        keys = await start_keyring(current, db, refresh=False)
        try:
            return await work(db)
        finally:
            # A command exits right after its commit: let the entitlement-cache invalidations
            # it published after commit reach the other instances first.
            await entitlement_cache.cache.drain()
            await keys.stop()

    return run_with_db(runner)


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency.upper()}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def render(report: RevenueReport) -> str:
    lines = [f"Billing report at {report.generated_at}"]
    currencies = sorted(report.mrr_cents) or ["usd"]
    for currency in currencies:
        lines.append(
            f"  MRR ({currency.upper()}): {_money(report.mrr_cents.get(currency, 0), currency)}"
        )
        lines.append(
            f"  ARR ({currency.upper()}): {_money(report.arr_cents.get(currency, 0), currency)}"
        )
    lines.append(f"  paying subscriptions: {report.paying_subscriptions}, seats: {report.seats}")
    for plan, counts in sorted(report.subscriptions_by_plan.items()):
        detail = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
        lines.append(f"  {plan}: {detail}")
    lines.append(
        f"  trial conversion: {_percent(report.trial_conversion)} "
        f"of {report.trials_ended} ended trials"
    )
    lines.append(
        f"  churn (30 days): {_percent(report.churn_30d)} ({report.canceled_30d} canceled)"
    )
    lines.append(
        f"  billing failure rate (30 days): {_percent(report.billing_failure_rate)} "
        f"({report.failed_invoices_30d} of {report.invoices_30d} invoices unpaid)"
    )
    return "\n".join(lines)


@app.command("report")
def report(as_json: JsonOption = False) -> None:
    """Revenue: MRR, ARR, subscriptions by plan, seats, trial conversion, churn, failures."""

    async def work(db: Database) -> RevenueReport:
        async with db.session_scope(write=False) as session:
            return await build_report(session)

    result = _run(work)
    if as_json:
        emit_json(result.as_dict())
    else:
        typer.echo(render(result))


@app.command("seed-plans")
def seed(as_json: JsonOption = False) -> None:
    """Write the plan catalog (built in or AAYU_BILLING_PLANS_FILE) to the database."""

    async def work(db: Database) -> list[str]:
        async with db.session_scope() as session:
            return await seed_plans(session, load_catalog(runtime.current().settings))

    changed = _run(work)
    if as_json:
        emit_json({"changed": changed})
    else:
        typer.echo(f"plans changed: {', '.join(changed) or 'none'}")


@app.command("tick")
def tick(as_json: JsonOption = False) -> None:
    """Run renewals (local provider) and dunning once, as the server's scheduler does."""

    async def work(db: Database) -> dict[str, Any]:
        provider = get_provider(runtime.current().settings)
        async with db.session_scope() as session:
            renewed = await renew_due(session, provider) if provider.name == "local" else []
            restricted = await dunning.advance(session, clock.now())
        return {"renewed": len(renewed), "restricted": len(restricted)}

    result = _run(work)
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"renewed {result['renewed']}, restricted {result['restricted']}")
