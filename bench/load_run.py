"""Load run: 1,000 concurrent signed-in sessions, one server, PostgreSQL + Redis (issue 11).

A real ``aayu-accounts serve`` process (production-like: PostgreSQL and Redis when they answer
on their local ports). Set-up, not measured: 1,000 accounts registered and signed in over HTTP
with a low Argon2 cost (sign-in cost has its own benchmark), a service client created with the
CLI. Then 1,000 concurrent clients, one per session, each on its own keep-alive connection,
cycle through the mix the scribe backend and the browser send:

* ``GET /api/v1/me`` (Bearer session),
* ``POST /api/v1/service/sessions/introspect`` (HMAC-signed, the session's token),
* ``POST /api/v1/service/entitlements/check`` (signed),
* ``POST /api/v1/service/flags/evaluate`` (signed).

Baseline in the same run, same server, same 1,000 clients: ``GET /health`` (no authentication,
no database). Reported: throughput, p50/p95/p99 per route and overall, error rate, and the
server's resident memory after set-up, after a 10,000-request warm-up and at the end (a leak
shows as growth between the last two). The default run stops at 30,000 mixed requests or after
60 s of measurement (baseline and warm-up capped at 20 s each), so ``make bench`` stays within a
few minutes even on a busy machine; ``--full`` sends 100,000 mixed requests with no time cap,
as the issue asks. By default every session sends its next request as soon as the last one is
answered (a closed loop: saturation, the worst case); ``--think 2`` paces each session like a
person reading a page (a pause of 0-4 s between requests). By default all clients of a phase
send their first request at once; ``--ramp 5`` starts them spread evenly over 5 s, as load
tools ramp up (the same ramp in every phase, baseline included; the phase's time counts from
its first client, so the ramp lowers req/s a little rather than flattering it). Reported
req/s count every answer, 503s included; ``ok req/s`` counts the successful ones only.

    python -m bench load_run             (or: python -m bench.load_run --full --sessions 1000)

Writes ``bench/results/load_run.json``. The load generator (aiohttp, one process) shares the
machine's cores with the server, so absolute numbers are a floor; the ratio to ``/health`` is
what survives a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import make_url

from aayu_accounts.client.signing import secret_key, sign_headers
from aayu_accounts.kit import clock
from bench._login_server import (
    PG_ADMIN_URL,
    REDIS_URL,
    UNLIMITED,
    Server,
    _answers,
    _execute,
    _free_port,
    _wait_healthy,
)

RESULTS = Path(__file__).parent / "results" / "load_run.json"
SERVER_LOG = RESULTS.with_suffix(".server.log")
WARMUP_REQUESTS = 10_000
DEFAULT_REQUESTS = 30_000
DEFAULT_SECONDS = 60.0
FULL_REQUESTS = 100_000
BASELINE_REQUESTS = 10_000
SETUP_CONCURRENCY = 8
SETUP_TRIES = 10
RSS_GROWTH_GOAL = 0.10  # at most 10 % between the warm-up and the end
OK = "ok"
ROUTES = ("me", "introspect", "entitlements", "flags")


@dataclass
class Session:
    token: str
    user_id: str
    org_id: str


@dataclass
class Stack:
    server: Server
    key_id: str
    secret: bytes


@dataclass
class Phase:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)

    def add(self, route: str, seconds: float, outcome: str) -> None:
        """``outcome`` is ``ok``, or what went wrong: ``route status code`` or an exception."""
        self.latencies.setdefault(route, []).append(seconds)
        self.requests += 1
        if outcome != OK:
            self.errors += 1
            self.failures[outcome] += 1

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_rps(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def percentiles(self, route: str | None = None) -> dict[str, float]:
        values = (
            self.latencies.get(route, [])
            if route is not None
            else [v for vs in self.latencies.values() for v in vs]
        )
        if len(values) < 100:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
        cuts = statistics.quantiles(values, n=100)
        return {"p50": cuts[49] * 1000, "p95": cuts[94] * 1000, "p99": cuts[98] * 1000}


@contextmanager
def _stack() -> Iterator[Stack]:
    """The server (cheap Argon2 for the set-up, limits out of the way) and a service client."""
    backend = os.environ.get("AAYU_BENCH_BACKEND") or (
        "postgresql" if _answers(5432) and _answers(6379) else "sqlite"
    )
    with tempfile.TemporaryDirectory(prefix="aayu-load-") as tmp:
        var = Path(tmp) / "var"
        var.mkdir(parents=True)
        env = {
            **os.environ,
            "AAYU_ENV": "development",
            "AAYU_VAR_DIR": str(var),
            "AAYU_SECRETS_DIR": str(var / "secrets"),
            "AAYU_RUN_WORKER_IN_PROCESS": "false",
            "AAYU_LOG_LEVEL": "WARNING",
            "AAYU_ARGON2_MEMORY_KIB": "1024",
            "AAYU_ARGON2_TIME_COST": "1",
            "AAYU_RATE_LIMIT_DEFAULT": f"{UNLIMITED}/minute",
            "AAYU_LOGIN_IP_CAPTCHA_AFTER": UNLIMITED,
            "AAYU_LOGIN_IP_BLOCK_AFTER": UNLIMITED,
        }
        pg_name = f"aayu_load_{uuid.uuid4().hex[:10]}"
        if backend == "postgresql":
            asyncio.run(_execute(PG_ADMIN_URL, f'CREATE DATABASE "{pg_name}"', autocommit=True))
            url = make_url(PG_ADMIN_URL).set(database=pg_name).render_as_string(hide_password=False)
            env["AAYU_REDIS_URL"] = REDIS_URL
            env["AAYU_REDIS_PREFIX"] = f"aayu-bench:{pg_name}:"
        else:
            url = f"sqlite+aiosqlite:///{var / 'aayu.db'}"
            env.pop("AAYU_REDIS_URL", None)
        env["AAYU_DATABASE_URL"] = url
        command = [sys.executable, "-m", "aayu_accounts"]
        process: subprocess.Popen[bytes] | None = None
        try:
            subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
            created = subprocess.run(
                [*command, "clients", "create", "load", "--json", "--rate-limit", UNLIMITED],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            issued = json.loads(created.stdout)
            port = _free_port()
            log_path = Path(tmp) / "server.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            server = Server(f"http://127.0.0.1:{port}", process, url, log_path, backend)
            _wait_healthy(server)
            yield Stack(server, issued["key_id"], secret_key(issued["secret"]))
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                # The server's warnings and errors (JSON lines) next to the results.
                with contextlib.suppress(OSError):
                    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(Path(tmp) / "server.log", SERVER_LOG)
            if backend == "postgresql":
                asyncio.run(
                    _execute(
                        PG_ADMIN_URL,
                        f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)',
                        autocommit=True,
                    )
                )


async def _bounded(count: int, limit: int, job: Any) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(index: int) -> Any:
        async with gate:
            return await job(index)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def _connector(limit: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=limit, limit_per_host=limit, force_close=False)


async def _setup_call(
    http: aiohttp.ClientSession, url: str, payload: dict[str, Any], expected: int
) -> Any:
    """One set-up request, tried again while the server sheds load: a 503, or the CAPTCHA the
    sign-in throttle asks for while its Redis calls time out under the burst (by design)."""
    for _ in range(SETUP_TRIES):
        async with http.post(url, json=payload) as response:
            body = await response.json()
            if response.status == expected:
                return body
            if response.status not in (401, 503) or body.get("code") == "invalid_credentials":
                raise RuntimeError(f"{url}: {response.status} {body}")
        await asyncio.sleep(1.0)
    raise RuntimeError(f"{url}: no {expected} after {SETUP_TRIES} tries")


async def _sessions(stack: Stack, count: int) -> list[Session]:
    """``count`` accounts registered, verified and signed in (set-up, not measured)."""
    base = stack.server.base_url
    run = secrets.token_hex(3)
    password = f"Quartz {secrets.token_urlsafe(12)} marble orchid"
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=_connector(SETUP_CONCURRENCY), timeout=timeout
    ) as http:

        async def register(index: int) -> None:
            payload = {
                "email": f"load.{index}.{run}@clinic-example.org",
                "password": password,
                "full_name": f"Load Person {index}",
                "organization_name": f"Load Clinic {index}",
            }
            await _setup_call(http, base + "/api/v1/auth/register", payload, 202)

        await _bounded(count, SETUP_CONCURRENCY, register)
        now = clock.now()
        value = (
            now if stack.server.backend == "postgresql" else now.strftime("%Y-%m-%d %H:%M:%S.%f")
        )
        await _execute(
            stack.server.database_url, "UPDATE users SET email_verified_at = :now", now=value
        )

        async def login(index: int) -> Session:
            payload = {"email": f"load.{index}.{run}@clinic-example.org", "password": password}
            body = await _setup_call(http, base + "/api/v1/auth/login", payload, 200)
            user = body["user"]
            return Session(body["token"], user["id"], user["memberships"][0]["org_id"])

        return await _bounded(count, SETUP_CONCURRENCY, login)


def _outcome(route: str, status: int, body: bytes) -> str:
    if status == 200:
        return OK
    try:
        code = json.loads(body).get("code", "")
    except ValueError:
        code = ""
    return f"{route} {status} {code}".strip()


def _signed(stack: Stack, path: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    headers = sign_headers(
        key_id=stack.key_id, secret=stack.secret, method="POST", path=path, body=body
    )
    headers["Content-Type"] = "application/json"
    return body, headers


async def _drive(
    stack: Stack,
    sessions: list[Session],
    total: int,
    seconds: float | None = None,
    *,
    baseline: bool = False,
    think: float = 0.0,
    ramp: float = 0.0,
) -> Phase:
    """``len(sessions)`` concurrent clients until ``total`` requests have been sent (or, with
    ``seconds``, that time has passed, whichever comes first)."""
    base = stack.server.base_url
    phase = Phase()
    issued = 0
    deadline = time.perf_counter() + seconds if seconds is not None else None
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=_connector(len(sessions)), timeout=timeout) as http:

        async def send(route: str, session: Session) -> str:
            if route in ("health", "me"):
                path = "/health" if route == "health" else "/api/v1/me"
                headers = {"Authorization": f"Bearer {session.token}"} if route == "me" else {}
                async with http.get(base + path, headers=headers) as response:
                    return _outcome(route, response.status, await response.read())
            path, payload = {
                "introspect": ("/api/v1/service/sessions/introspect", {"token": session.token}),
                "entitlements": (
                    "/api/v1/service/entitlements/check",
                    {"org_id": session.org_id, "user_id": session.user_id, "feature": "notes"},
                ),
                "flags": (
                    "/api/v1/service/flags/evaluate",
                    {"user_id": session.user_id, "org_id": session.org_id},
                ),
            }[route]
            body, headers = _signed(stack, path, payload)
            async with http.post(base + path, data=body, headers=headers) as response:
                answer = await response.read()
                outcome = _outcome(route, response.status, answer)
                if outcome == OK and route == "introspect" and not json.loads(answer)["active"]:
                    return f"{route} 200 inactive"
                return outcome

        async def client(index: int, session: Session) -> None:
            nonlocal issued
            if ramp:  # client i starts at i/n of the ramp: an even ramp-up, no lockstep
                await asyncio.sleep(ramp * index / len(sessions))
            step = index  # each client starts at a different route: an even mix at every moment
            while issued < total and (deadline is None or time.perf_counter() < deadline):
                issued += 1
                route = "health" if baseline else ROUTES[step % len(ROUTES)]
                step += 1
                started = time.perf_counter()
                try:
                    outcome = await send(route, session)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = f"{route} {type(exc).__name__}"
                phase.add(route, time.perf_counter() - started, outcome)
                if think:  # a person reading the page: uniform around the mean, no lockstep
                    await asyncio.sleep(random.uniform(0, 2 * think))

        started = time.perf_counter()
        await asyncio.gather(*(client(i, s) for i, s in enumerate(sessions)))
        phase.seconds = time.perf_counter() - started
    return phase


def measure(
    sessions_count: int,
    requests: int,
    seconds: float | None,
    think: float = 0.0,
    ramp: float = 0.0,
) -> dict[str, Any]:
    with _stack() as stack:
        setup_started = time.perf_counter()
        sessions = asyncio.run(_sessions(stack, sessions_count))
        setup_seconds = time.perf_counter() - setup_started
        rss_setup = stack.server.rss_kib()
        # (Smaller runs, e.g. a smoke test with --requests 3000, scale the two phases down.)
        baseline_count = min(BASELINE_REQUESTS, requests // 3)
        warmup_count = min(WARMUP_REQUESTS, requests // 3)
        third = seconds / 3 if seconds is not None else None
        baseline = asyncio.run(
            _drive(stack, sessions, baseline_count, third, baseline=True, think=think, ramp=ramp)
        )
        warmup = asyncio.run(_drive(stack, sessions, warmup_count, third, think=think, ramp=ramp))
        rss_warm = stack.server.rss_kib()
        measured = asyncio.run(
            _drive(stack, sessions, requests - warmup.requests, seconds, think=think, ramp=ramp)
        )
        rss_end = stack.server.rss_kib()
        backend = stack.server.backend
    mixed_total = warmup.requests + measured.requests
    return {
        "backend": backend,
        "sessions": sessions_count,
        "think_seconds": think,
        "ramp_seconds": ramp,
        "setup_seconds": setup_seconds,
        "baseline": {
            "route": "GET /health",
            "requests": baseline.requests,
            "rps": baseline.rps,
            "ok_rps": baseline.ok_rps,
            "errors": baseline.errors,
            "failures": dict(baseline.failures.most_common()),
            **baseline.percentiles(),
        },
        "mix": {
            "requests": measured.requests,
            "rps": measured.rps,
            "ok_rps": measured.ok_rps,
            "errors": measured.errors,
            "error_rate": measured.errors / measured.requests if measured.requests else 0.0,
            "failures": dict(measured.failures.most_common()),
            **measured.percentiles(),
            "routes": {route: measured.percentiles(route) for route in ROUTES},
        },
        "mixed_requests_total": mixed_total,
        "warmup_errors": warmup.errors,
        "rss_mib": {
            "after_setup": rss_setup / 1024,
            "after_warmup": rss_warm / 1024,
            "at_end": rss_end / 1024,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
        },
    }


def _print(result: dict[str, Any]) -> bool:
    base, mix, rss = result["baseline"], result["mix"], result["rss_mib"]
    growth = (rss["at_end"] - rss["after_warmup"]) / rss["after_warmup"]
    ok = bool(mix["errors"] == 0 and growth <= RSS_GROWTH_GOAL)
    print(
        f"{result['sessions']} concurrent signed-in sessions, {result['backend']}"
        f" (+ Redis), set-up {result['setup_seconds']:.0f} s,"
        f" think time {result['think_seconds']:.1f} s,"
        f" ramp-up {result['ramp_seconds']:.1f} s,"
        f" load average {result['machine']['load_average'][0]:.1f}"
    )
    print(
        f"{'route':<34}{'req/s':>9}{'ok req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}"
    )
    print(
        f"{'GET /health (baseline)':<34}{base['rps']:>9.0f}{base['ok_rps']:>9.0f}"
        f"{base['p50']:>9.1f}{base['p95']:>9.1f}{base['p99']:>9.1f}{base['errors']:>8}"
    )
    print(
        f"{'mix (me/introspect/entitle/flags)':<34}{mix['rps']:>9.0f}{mix['ok_rps']:>9.0f}"
        f"{mix['p50']:>9.1f}{mix['p95']:>9.1f}{mix['p99']:>9.1f}{mix['errors']:>8}"
    )
    for route, cuts in mix["routes"].items():
        print(
            f"{'  ' + route:<34}{'':>18}{cuts['p50']:>9.1f}{cuts['p95']:>9.1f}{cuts['p99']:>9.1f}"
        )
    print(f"{'ratio mix / baseline req/s':<34}{mix['rps'] / base['rps']:>9.2f}")
    print(f"{'ratio mix ok / baseline ok req/s':<34}{mix['ok_rps'] / base['ok_rps']:>9.2f}")
    print(f"{'error rate':<34}{mix['error_rate']:>9.2%}")
    for what, count in list(mix["failures"].items())[:6]:
        print(f"{'  ' + what:<34}{count:>9}")
    print(
        f"{'server RSS MiB setup/warm/end':<34}"
        f"{rss['after_setup']:>9.0f}{rss['after_warmup']:>9.0f}{rss['at_end']:>9.0f}"
    )
    print(
        f"{'RSS growth after warm-up':<34}{growth:>9.1%}"
        f"  over {result['mix']['requests']:,} requests (goal <= {RSS_GROWTH_GOAL:.0%})"
    )
    print(f"{'verdict (no errors, no leak)':<34}{'PASS' if ok else 'FAIL':>9}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000, help="concurrent sessions")
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="mixed requests, warm-up included"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="time cap of the measured phase (the baseline and warm-up get a third each)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"{FULL_REQUESTS:,} mixed requests, no time cap (the leak check as issue 11 asks)",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean pause of each session between requests (0: closed loop, saturation)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        help="spread the clients' first requests evenly over this many seconds in each phase "
        "(0: all at once)",
    )
    args = parser.parse_args(argv if argv is not None else [])
    requests = FULL_REQUESTS if args.full else args.requests
    result = measure(
        args.sessions, requests, None if args.full else args.seconds, args.think, args.ramp
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    ok = _print(result)
    print(f"(written to {RESULTS})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
