"""Delivering recorded Stripe events the way Stripe does (signed raw bytes, any order), to an
app and plans set up for them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.api_security.settings import ApiSecuritySettings
from aayu_accounts.app import create_app
from aayu_accounts.billing.plan.catalog import DEFAULT_PLANS
from aayu_accounts.billing.plan.service import seed_plans
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring
from aayu_accounts.db import Database
from aayu_accounts.jobs import Worker
from aayu_accounts.kit.clock import FrozenClock

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
# The Stripe price of the Clinic plan in the recorded events.
RECORDED_PRICE = "price_1QAayuClinicMonthly"


@asynccontextmanager
async def webhook_app(settings: Settings, db: Database, keyring: Keyring) -> AsyncIterator[FastAPI]:
    """The app with Stripe's webhook path allowed more than the anonymous per-IP limit
    (Stripe delivers many events from few addresses; the signature is the gate)."""
    application = create_app(settings, database=db, keyring=keyring)
    application.state.api_security_settings = ApiSecuritySettings(
        rate_limit_routes={"/api/v1/webhooks/stripe": "10000/minute"}
    )
    async with LifespanManager(application):
        yield application


async def seed_recorded_plans(session: AsyncSession) -> None:
    """The default plans, the Clinic plan carrying the Stripe price the recorded events name."""
    await seed_plans(
        session,
        [
            plan.model_copy(update={"stripe_price_id": RECORDED_PRICE})
            if plan.id == "clinic_monthly"
            else plan
            for plan in DEFAULT_PLANS
        ],
    )


def recorded_events(name: str, *, tag: str, org_id: str) -> list[dict[str, Any]]:
    text = (FIXTURES / name).read_text("utf-8")
    text = text.replace("{{TAG}}", tag).replace("{{ORG_ID}}", org_id)
    events: list[dict[str, Any]] = json.loads(text)
    return events


def stripe_event(event_id: str, kind: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    """``obj`` in the envelope of an event Stripe sends (a fresh event, not a recorded one)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(event, separators=(",", ":")).encode()
    return await client.post(
        "/api/v1/webhooks/stripe",
        content=raw,
        headers={"Stripe-Signature": sign(raw), "Content-Type": "application/json"},
    )


async def drain_jobs(db: Database, frozen_clock: FrozenClock, rounds: int = 20) -> int:
    """Run queued jobs, moving the clock past retry backoffs, until none is left."""
    worker = Worker(db)
    ran = 0
    for _ in range(rounds):
        done = await worker.run_once()
        ran += done
        if done == 0:
            frozen_clock.advance(7200)
            if await worker.run_once() == 0:
                break
    return ran
