"""What the outage tests share: clients with addresses of their own, a sign-up request, the
count of stored accounts, and the settings that make a dependency's failure quick to see."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from aayu_accounts.config import Settings
from aayu_accounts.db import Database
from aayu_accounts.models.user import User
from tests.fixtures.database import make_settings

PASSWORD = "Vq-fault-suite-passphrase-7z!"


def clients(app: FastAPI, count: int, *, first_host: int = 10) -> list[httpx.AsyncClient]:
    """One address per client: the per-IP limit on anonymous requests is not what answers."""
    return [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(f"127.0.0.{first_host + i}", 40000)),
            base_url="http://testserver",
        )
        for i in range(count)
    ]


REGISTER = "/api/v1/auth/register"


def sign_up_body(email_prefix: str) -> tuple[str, dict[str, str]]:
    """A new clinic's sign-up (``POST REGISTER``) under a fresh address; returns both."""
    email = f"{email_prefix}.{uuid.uuid4().hex[:10]}@clinic-example.org"
    body = {
        "email": email,
        "password": PASSWORD,
        "full_name": "Asha Verma",
        "organization_name": "Lotus Family Clinic",
    }
    return email, body


async def stored_users(url: str, tmp_path: Path) -> int:
    """How many accounts the database at ``url`` holds (through a connection of its own)."""
    db = Database.from_settings(make_settings(url, tmp_path))
    try:
        async with db.session_scope(write=False) as session:
            return int(await session.scalar(select(func.count()).select_from(User)) or 0)
    finally:
        await db.dispose()


def quick_failing_database(url: str, tmp_path: Path, **extra: object) -> Settings:
    """Cheap hashing, and a database whose loss is seen (health checks, breaker, timeouts)
    within about a second, so an outage test fits in CI."""
    return make_settings(
        url,
        tmp_path,
        argon2_memory_kib=1024,
        argon2_time_cost=1,
        db_health_check_seconds=0.3,
        db_breaker_reset_seconds=1.0,
        db_connect_timeout_seconds=1.0,
        db_statement_timeout_seconds=2.0,
        **extra,
    )
