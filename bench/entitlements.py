"""Entitlement checks are cheap enough to make on every note (issue 9).

Against a real ``aayu-accounts serve`` process, in the same run and with the same client:
requests per second of signed ``POST /api/v1/service/entitlements/check`` (HMAC signature,
nonce stored for replay protection, cached entitlement snapshot: no billing query per check)
and of unsigned ``GET /health``, at 16 concurrent clients. The ratio is what signing, the
nonce store and the entitlement decision cost relative to a bare route. Each signed request
carries a fresh nonce and timestamp, as a real caller must.

    python -m bench entitlements      (or: python -m bench.entitlements --seconds 10)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from aayu_accounts.client.signing import secret_key, sign_headers
from bench._login_server import running_server

PATH = "/api/v1/service/entitlements/check"
CLIENTS = 16
# The goal: a check costs at most a few bare requests (ratio >= 0.25).
RATIO_GOAL = 0.25


async def _load_health(base_url: str, seconds: float) -> tuple[float, int]:
    return await _load(base_url, seconds, lambda client: client.get("/health"))


async def _load_signed(
    base_url: str, seconds: float, key_id: str, secret: str, body: dict[str, Any]
) -> tuple[float, int]:
    raw = json.dumps(body).encode()
    key = secret_key(secret)

    def call(client: httpx.AsyncClient) -> Any:
        headers = sign_headers(key_id=key_id, secret=key, method="POST", path=PATH, body=raw)
        headers["Content-Type"] = "application/json"
        return client.post(PATH, content=raw, headers=headers)

    return await _load(base_url, seconds, call)


async def _load(base_url: str, seconds: float, call: Any) -> tuple[float, int]:
    """(requests per second, failures) for ``CLIENTS`` concurrent loops."""
    done = failures = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def loop() -> None:
            nonlocal done, failures
            while time.perf_counter() < deadline:
                response = await call(client)
                done += 1
                if response.status_code != 200 or not _ok(response):
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - started
    return done / elapsed, failures


def _ok(response: httpx.Response) -> bool:
    if response.request.url.path != PATH:
        return True
    return bool(response.json().get("allowed"))


def _cli(server: Any, *args: str) -> str:
    var = server.log_path.parent / "var"
    env = {
        **os.environ,
        "AAYU_ENV": "development",
        "AAYU_DATABASE_URL": server.database_url,
        "AAYU_VAR_DIR": str(var),
        "AAYU_SECRETS_DIR": str(var / "secrets"),
        "AAYU_LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-m", "aayu_accounts", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def measure(seconds: float) -> dict[str, float]:
    extra = {"AAYU_SERVICE_CLIENT_RATE_LIMIT_PER_SECOND": "1000000"}
    with (
        running_server(extra) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as sync,
    ):
        [(email, password)] = server.register_verified(sync, 1)
        signed_in = sync.post("/api/v1/auth/login", json={"email": email, "password": password})
        signed_in.raise_for_status()
        user = signed_in.json()["user"]
        org_id = user["memberships"][0]["org_id"]
        auth = {"Authorization": f"Bearer {signed_in.json()['token']}"}
        subscribed = sync.post(
            f"/api/v1/orgs/{org_id}/subscription",
            json={
                "plan_id": "clinic_monthly",
                "seats": 1,
                "payment_method": "pm_card_visa",
                "trial": False,
            },
            headers=auth,
        )
        subscribed.raise_for_status()
        issued = json.loads(
            _cli(server, "clients", "create", "bench-scribe", "--json", "--rate-limit", "1000000")
        )
        body = {"org_id": org_id, "user_id": user["id"], "feature": "notes"}

        async def run() -> dict[str, float]:
            await _load_signed(server.base_url, 1.0, issued["key_id"], issued["secret"], body)
            bare, bare_failed = await _load_health(server.base_url, seconds)
            signed, signed_failed = await _load_signed(
                server.base_url, seconds, issued["key_id"], issued["secret"], body
            )
            return {
                "bare_rps": bare,
                "signed_rps": signed,
                "ratio": signed / bare,
                "failures": float(bare_failed + signed_failed),
                "backend_pg": 1.0 if server.backend == "postgresql" else 0.0,
            }

        return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args(argv if argv is not None else [])
    result = measure(args.seconds)
    ok = result["failures"] == 0 and result["ratio"] >= RATIO_GOAL
    backend = "postgresql+redis" if result["backend_pg"] else "sqlite"
    print(f"{'metric (' + backend + ', 16 clients)':<44}{'value':>12}")
    print(f"{'GET /health req/s':<44}{result['bare_rps']:>12.0f}")
    print(f"{'signed entitlement checks/s':<44}{result['signed_rps']:>12.0f}")
    print(f"{'ratio signed check to /health':<44}{result['ratio']:>12.2f}")
    print(f"{'failed or refused requests':<44}{result['failures']:>12.0f}")
    print(f"{'goal (ratio >= 0.25, no failures)':<44}{'PASS' if ok else 'FAIL':>12}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
