"""Side by side with fastapi-users 15: same machine, database and Argon2 parameters (issue 11).

Both servers run as uvicorn processes on PostgreSQL (ours with Redis, as deployed), one after
the other, measured by the same client code:

* sign-ins per second at 16 concurrent clients, with Argon2id m=64 MiB, t=3, p=1 on both sides
  (ours: ``POST /api/v1/auth/login``, a server-side session, audit event, throttle; theirs:
  ``POST /auth/jwt/login``, a JWT);
* authenticated profile reads per second at 16 clients and p99 at 64 clients (ours:
  ``GET /api/v1/me`` with a session token; theirs: ``GET /users/me`` with a JWT);
* each server's own ``GET /health`` at 16 clients as the baseline, so the ratios show what each
  stack's authentication costs on top of its own bare route.

The peer (bench/_peer_fastapi_users.py) needs fastapi-users, whose SQLAlchemy adapter pins
``sqlalchemy<2.1`` while we use 2.1: it is installed on first use into
``bench/results/peer-site`` (``pip install --target``, versions in bench/peer-requirements.txt)
and put first on the peer process's PYTHONPATH, so our virtualenv is never changed.
``UnleashClient`` is compared in bench/flags.py.

    python -m bench peers            (or: python -m bench.peers --seconds 15)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import make_url

from aayu_accounts.config import Settings
from bench._login_server import PG_ADMIN_URL, _execute, _free_port, running_server
from bench.me_throughput import _load

HERE = Path(__file__).parent
PEER_SITE = HERE / "results" / "peer-site"
REQUIREMENTS = HERE / "peer-requirements.txt"
RESULTS = HERE / "results" / "peers.json"
SIGNIN_CLIENTS = 16


def ensure_peer_site() -> Path:
    """fastapi-users and its pinned dependencies in a folder of their own (first run only)."""
    marker = PEER_SITE / ".complete"
    if not marker.exists():
        PEER_SITE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(PEER_SITE),
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
        )
        marker.touch()
    return PEER_SITE


@contextmanager
def peer_server() -> Iterator[str]:
    site = ensure_peer_site()
    name = f"aayu_peer_{uuid.uuid4().hex[:10]}"
    asyncio.run(_execute(PG_ADMIN_URL, f'CREATE DATABASE "{name}"', autocommit=True))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    settings = Settings()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(HERE.parent)]),
        "PEER_DATABASE_URL": url,
        "PEER_ARGON2_MEMORY_KIB": str(settings.argon2_memory_kib),
        "PEER_ARGON2_TIME_COST": str(settings.argon2_time_cost),
        "PEER_ARGON2_PARALLELISM": str(settings.argon2_parallelism),
    }
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench._peer_fastapi_users:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=HERE.parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("the peer server exited")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the peer server did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        asyncio.run(
            _execute(
                PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', autocommit=True
            )
        )


async def _signins(
    base: str, sign_in: Callable[[httpx.AsyncClient], Awaitable[bool]], seconds: float
) -> tuple[float, int]:
    """(successful sign-ins per second, failures) at SIGNIN_CLIENTS concurrent clients."""
    ok = failed = 0
    deadline = time.perf_counter() + seconds
    # No cookie jar: a browser's session cookie would make each further POST need a CSRF
    # token; API clients sign in with the body alone, as the peer's clients do.
    no_cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    async with httpx.AsyncClient(base_url=base, timeout=60, cookies=no_cookies) as client:

        async def loop() -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                if await sign_in(client):
                    ok += 1
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(SIGNIN_CLIENTS)))
        elapsed = time.perf_counter() - started
    return ok / elapsed, failed


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000 if len(values) >= 100 else max(values)


async def _profile(base: str, path: str, auth: dict[str, str], seconds: float) -> dict[str, float]:
    await _load(base, path, auth, 16, 1.0)  # warm-up
    bare, _, bare_failed = await _load(base, "/health", {}, 16, seconds)
    rps, _, failed = await _load(base, path, auth, 16, seconds)
    _, latencies, failed_64 = await _load(base, path, auth, 64, seconds)
    return {
        "health_rps": bare,
        "profile_rps": rps,
        "ratio": rps / bare,
        "p99_64_ms": _p99(latencies),
        "failures": float(bare_failed + failed + failed_64),
    }


def measure_ours(seconds: float) -> dict[str, Any]:
    with running_server() as server, httpx.Client(base_url=server.base_url, timeout=60) as sync:
        accounts = server.register_verified(sync, SIGNIN_CLIENTS)
        email, password = accounts[0]
        first = sync.post("/api/v1/auth/login", json={"email": email, "password": password})
        first.raise_for_status()
        auth = {"Authorization": f"Bearer {first.json()['token']}"}
        turn = 0
        failures: Counter[str] = Counter()

        async def sign_in(client: httpx.AsyncClient) -> bool:
            nonlocal turn
            email, password = accounts[turn % len(accounts)]
            turn += 1
            response = await client.post(
                "/api/v1/auth/login", json={"email": email, "password": password}
            )
            if response.status_code != 200:
                failures[f"{response.status_code} {response.json().get('code', '')}"] += 1
            return response.status_code == 200

        async def run() -> dict[str, Any]:
            rate, failed = await _signins(server.base_url, sign_in, seconds)
            profile = await _profile(server.base_url, "/api/v1/me", auth, seconds / 3)
            return {
                "signins_per_second": rate,
                "signin_failures": failed,
                "signin_failure_kinds": dict(failures),
                **profile,
            }

        return {"backend": server.backend, **asyncio.run(run())}


def measure_peer(seconds: float) -> dict[str, Any]:
    with peer_server() as base, httpx.Client(base_url=base, timeout=60) as sync:
        password = f"Quartz {secrets.token_urlsafe(12)} marble orchid"
        emails = [f"peer{i}.{secrets.token_hex(3)}@clinic-example.org" for i in range(16)]
        for email in emails:
            created = sync.post("/auth/register", json={"email": email, "password": password})
            created.raise_for_status()
        first = sync.post("/auth/jwt/login", data={"username": emails[0], "password": password})
        first.raise_for_status()
        auth = {"Authorization": f"Bearer {first.json()['access_token']}"}
        turn = 0

        async def sign_in(client: httpx.AsyncClient) -> bool:
            nonlocal turn
            email = emails[turn % len(emails)]
            turn += 1
            response = await client.post(
                "/auth/jwt/login", data={"username": email, "password": password}
            )
            return response.status_code == 200

        async def run() -> dict[str, Any]:
            rate, failed = await _signins(base, sign_in, seconds)
            profile = await _profile(base, "/users/me", auth, seconds / 3)
            return {"signins_per_second": rate, "signin_failures": failed, **profile}

        return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="sign-in phase length")
    args = parser.parse_args(argv if argv is not None else [])
    ours = measure_ours(args.seconds)
    theirs = measure_peer(args.seconds)
    load_average = os.getloadavg()
    result = {"ours": ours, "fastapi_users": theirs, "load_average": load_average}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    rows = [
        ("sign-ins/s (16 clients, Argon2id 64 MiB)", "signins_per_second", "{:.2f}"),
        ("sign-in failures", "signin_failures", "{:.0f}"),
        ("GET /health req/s (16 clients)", "health_rps", "{:.0f}"),
        ("profile req/s (16 clients)", "profile_rps", "{:.0f}"),
        ("ratio profile / own /health", "ratio", "{:.2f}"),
        ("profile p99 ms at 64 clients", "p99_64_ms", "{:.1f}"),
        ("profile failures", "failures", "{:.0f}"),
    ]
    print(f"{'metric':<42}{'aayu':>12}{'fastapi-users':>15}{'aayu/peer':>11}")
    for label, key, fmt in rows:
        mine, peer = float(ours[key]), float(theirs[key])
        ratio = f"{mine / peer:.2f}" if peer else "-"
        print(f"{label:<42}{fmt.format(mine):>12}{fmt.format(peer):>15}{ratio:>11}")
    if ours["signin_failure_kinds"]:
        print(f"our sign-in failures: {ours['signin_failure_kinds']}")
    print(f"(ours on {ours['backend']} + Redis; the peer on PostgreSQL; load average "
          f"{load_average[0]:.1f}; written to {RESULTS})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
