"""Delivering recorded Stripe events the way Stripe does: signed raw bytes, any order."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx

from aayu_accounts.db import Database
from aayu_accounts.jobs import Worker
from aayu_accounts.kit.clock import FrozenClock

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"


def recorded_events(name: str, *, tag: str, org_id: str) -> list[dict[str, Any]]:
    text = (FIXTURES / name).read_text("utf-8")
    text = text.replace("{{TAG}}", tag).replace("{{ORG_ID}}", org_id)
    events: list[dict[str, Any]] = json.loads(text)
    return events


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
