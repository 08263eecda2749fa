"""Driving the accounts API like a client would: sign up, read the emailed link, sign in."""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pyotp
from altcha import v1 as altcha_v1
from sqlalchemy import select

from aayu_accounts.db import Database
from aayu_accounts.identity.user.service import RESET_JOB, send_password_reset
from aayu_accounts.jobs import DONE, QUEUED
from aayu_accounts.kit import clock
from aayu_accounts.models.job import Job
from aayu_accounts.models.outbox_email import OutboxEmail

_TOKEN_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_\-]+)")


def strong_password() -> str:
    return f"Vq{secrets.token_urlsafe(12)}!7z"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}.{secrets.token_hex(4)}@clinic-example.org"


@dataclass
class Account:
    email: str
    password: str
    full_name: str
    org_name: str
    user_id: str = ""
    org_id: str = ""
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class SentEmail:
    to: str
    template: str
    subject: str
    body: str
    status: str


async def run_reset_requests(db: Database) -> int:
    """Do what the worker does with queued password-reset requests (a reset request only
    queues a job, so its timing never tells whether the account exists); other jobs stay
    queued for the tests that watch them."""
    async with db.session_scope() as session:
        jobs = (
            await session.scalars(select(Job).where(Job.kind == RESET_JOB, Job.status == QUEUED))
        ).all()
        for job in jobs:
            await send_password_reset(session, job.payload)
            job.status = DONE
    return len(jobs)


async def emails_to(db: Database, address: str, template: str | None = None) -> list[SentEmail]:
    """The outbox's messages to ``address`` (decrypted), oldest first."""
    await run_reset_requests(db)
    async with db.session_scope(write=False) as session:
        rows = (await session.scalars(select(OutboxEmail).order_by(OutboxEmail.created_at))).all()
        found = [
            SentEmail(r.to_address or "", r.template, r.subject, r.body_text or "", r.status)
            for r in rows
        ]
    found = [e for e in found if e.to == address]
    if template is not None:
        found = [e for e in found if e.template == template]
    return found


async def token_from_email(db: Database, address: str, template: str) -> str:
    emails = await emails_to(db, address, template)
    assert emails, f"no {template} email to that address"
    match = _TOKEN_IN_LINK.search(emails[-1].body)
    assert match, "the email carries no token link"
    return match.group(1)


async def register(
    client: httpx.AsyncClient,
    *,
    email: str | None = None,
    password: str | None = None,
    full_name: str = "Asha Verma",
    org_name: str = "Lotus Family Clinic",
) -> Account:
    account = Account(
        email=email or unique_email(),
        password=password or strong_password(),
        full_name=full_name,
        org_name=org_name,
    )
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": account.email,
            "password": account.password,
            "full_name": account.full_name,
            "organization_name": account.org_name,
        },
    )
    assert response.status_code == 202, response.text
    return account


async def verify(client: httpx.AsyncClient, db: Database, account: Account) -> None:
    token = await token_from_email(db, account.email, "verify_email")
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 200, response.text


async def login(client: httpx.AsyncClient, account: Account, **extra: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": account.password, **extra},
    )


async def signed_up(client: httpx.AsyncClient, db: Database, **kwargs: Any) -> Account:
    """Registered, verified and signed in (``token`` set; the client keeps no cookie)."""
    account = await register(client, **kwargs)
    await verify(client, db, account)
    response = await login(client, account)
    assert response.status_code == 200, response.text
    body = response.json()
    account.token = body["token"]
    account.user_id = body["user"]["id"]
    account.org_id = body["user"]["memberships"][0]["org_id"]
    client.cookies.clear()
    return account


async def invite_and_join(
    client: httpx.AsyncClient, db: Database, owner: Account, role: str, **kwargs: Any
) -> Account:
    """``owner`` invites a new address with ``role``; the invitee creates the account and
    signs in."""
    member = Account(
        email=unique_email(role),
        password=strong_password(),
        full_name=kwargs.get("full_name", "Ravi Kumar"),
        org_name=owner.org_name,
    )
    response = await client.post(
        f"/api/v1/orgs/{owner.org_id}/invitations",
        json={"email": member.email, "role": role},
        headers=owner.auth,
    )
    assert response.status_code == 201, response.text
    token = await token_from_email(db, member.email, "invitation")
    response = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "full_name": member.full_name, "password": member.password},
    )
    assert response.status_code == 200, response.text
    member.user_id = response.json()["user_id"]
    member.org_id = owner.org_id
    response = await login(client, member)
    assert response.status_code == 200, response.text
    member.token = response.json()["token"]
    client.cookies.clear()
    return member


async def patch_member(
    client: httpx.AsyncClient, caller: Account, user_id: str, payload: dict[str, Any]
) -> httpx.Response:
    """``caller`` changes ``user_id``'s membership (role or active) in the caller's clinic."""
    return await client.patch(
        f"/api/v1/orgs/{caller.org_id}/members/{user_id}", json=payload, headers=caller.auth
    )


def solve_captcha(challenge: dict[str, Any], **changes: Any) -> str:
    """What the ALTCHA widget sends: base64 of the JSON solution (``changes`` tamper with it)."""
    found = altcha_v1.solve_challenge(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"]
    )
    assert found is not None
    body = {
        "algorithm": challenge["algorithm"],
        "challenge": challenge["challenge"],
        "number": found.number,
        "salt": challenge["salt"],
        "signature": challenge["signature"],
        **changes,
    }
    return base64.b64encode(json.dumps(body).encode()).decode()


def totp_now(secret: str, *, offset_steps: int = 0) -> str:
    """The code an authenticator shows now (by the possibly frozen test clock)."""
    return pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=30 * offset_steps))
