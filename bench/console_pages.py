"""Console pages answer quickly: server time of the billing, audit and operations pages (issue 10).

Against a real ``aayu-accounts serve`` process with demo data made through the API (a clinic
owner with a paid subscription and invoices, a seat change, audit events from sign-ins and
flag changes, an incident, a platform administrator with TOTP), each page is fetched
sequentially on loopback and timed from request to last byte; ``GET /health`` (no
authentication, no database, no template) is timed the same way in the same run, so the ratio
shows what a page costs beyond the bare round trip. Goal (issue 10): every page under 300 ms.

    python -m bench console_pages      (or: python -m bench.console_pages --requests 50)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp

from bench._login_server import Server, _execute, running_server

GOAL_MS = 300.0
PUBLIC_PAGES = (
    "/sign-in",
    "/sign-up",
    "/reset-password/request",
    "/reset-password?token=x",
    "/verify-email?token=x",
    "/accept-invitation?token=x",
)
OWNER_PAGES = ("/clinic", "/billing", "/audit", "/audit?outcome=success", "/account")
ADMIN_PAGES = (
    "/operations",
    "/operations/verdicts",
    "/operations/incidents",
    "/operations/rollback",
    "/outbox",
)


@dataclass(frozen=True)
class Timing:
    path: str
    median_ms: float
    p95_ms: float
    failures: int


def _login(client: httpx.Client, email: str, password: str) -> tuple[str, dict[str, Any]]:
    """(session token, the signed-in user) of a password sign-in without MFA."""
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    response.raise_for_status()
    body = response.json()
    client.cookies.clear()
    return str(body["token"]), dict(body["user"])


def _demo_data(server: Server, client: httpx.Client) -> tuple[str, str]:
    """Session tokens of (owner, platform admin with TOTP) after making the demo data."""
    (owner_email, owner_password), (admin_email, admin_password) = server.register_verified(
        client, 2
    )
    owner, owner_user = _login(client, owner_email, owner_password)
    auth = {"Authorization": f"Bearer {owner}"}
    org_id = owner_user["memberships"][0]["org_id"]
    client.post(
        f"/api/v1/orgs/{org_id}/subscription",
        json={
            "plan_id": "clinic_monthly",
            "seats": 3,
            "payment_method": "pm_card_visa",
            "trial": False,
        },
        headers=auth,
    ).raise_for_status()
    client.patch(
        f"/api/v1/orgs/{org_id}/subscription", json={"seats": 5}, headers=auth
    ).raise_for_status()
    for _ in range(10):  # audit events of sign-ins (sessions, logins)
        _login(client, owner_email, owner_password)
    admin_id = _login(client, admin_email, admin_password)[1]["id"]
    asyncio.run(
        _execute(
            server.database_url,
            "UPDATE users SET is_platform_admin = :yes WHERE id = :id",
            yes=True,
            id=admin_id,
        )
    )
    admin, _user = _login(client, admin_email, admin_password)
    admin_auth = {"Authorization": f"Bearer {admin}"}
    started = client.post("/api/v1/me/mfa/totp", headers=admin_auth)
    started.raise_for_status()
    totp = pyotp.TOTP(started.json()["secret"])
    confirmed = client.post(
        "/api/v1/me/mfa/totp/confirm", json={"code": totp.now()}, headers=admin_auth
    )
    confirmed.raise_for_status()
    admin = confirmed.json().get("token") or admin
    admin_auth = {"Authorization": f"Bearer {admin}"}
    for percent in (5, 10, 25):
        client.put(
            "/api/v1/admin/flags/NEW_AUTH",
            json={"enabled": True, "rollout_percent": percent},
            headers=admin_auth,
        ).raise_for_status()
    client.post("/api/v1/admin/rollback", json={"reason": "bench"}, headers=admin_auth)
    client.cookies.clear()
    return owner, str(admin)


def _time(client: httpx.Client, path: str, token: str | None, requests: int) -> Timing:
    client.cookies.clear()
    if token:
        client.cookies.set("aayu_session", token)
    for _ in range(3):  # warm-up: templates compiled, caches filled
        client.get(path)
    samples: list[float] = []
    failures = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            failures += 1
    p95 = statistics.quantiles(samples, n=20)[18] if len(samples) >= 20 else max(samples)
    return Timing(path, statistics.median(samples), p95, failures)


def measure(requests: int) -> list[Timing]:
    with running_server() as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        owner, admin = _demo_data(server, client)
        timings = [_time(client, "/health", None, requests)]
        timings += [_time(client, path, None, requests) for path in PUBLIC_PAGES]
        timings += [_time(client, path, owner, requests) for path in OWNER_PAGES]
        timings += [_time(client, path, admin, requests) for path in ADMIN_PAGES]
        client.cookies.set("aayu_session", admin)
        incident = re.search(
            r'href="(/operations/incidents/[^"]+)"', client.get("/operations/incidents").text
        )
        if incident:
            timings.append(_time(client, incident.group(1), admin, requests))
        return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    args = parser.parse_args(argv if argv is not None else [])
    timings = measure(args.requests)
    health = timings[0].median_ms
    ok = all(t.failures == 0 and t.p95_ms < GOAL_MS for t in timings)
    print(f"{'page':<36}{'median ms':>10}{'p95 ms':>10}{'x /health':>11}{'failed':>8}")
    for t in timings:
        path = t.path if len(t.path) <= 35 else t.path[:32] + "..."
        ratio = t.median_ms / health if health else float("nan")
        print(f"{path:<36}{t.median_ms:>10.1f}{t.p95_ms:>10.1f}{ratio:>11.1f}{t.failures:>8}")
    print(f"{'goal (every page p95 < 300 ms)':<36}{'PASS' if ok else 'FAIL':>39}")
    return 0 if ok else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
