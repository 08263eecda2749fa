"""Authenticated requests are cheap: ``GET /api/v1/me`` against a bare route (issue 4).

Against a real ``aayu-accounts serve`` process, in the same run: requests per second of
``GET /api/v1/me`` (Bearer session, cached lookup, no write per request) and of ``GET /health``
(no authentication, no database) at 16 concurrent clients, and the p99 latency of ``/me`` at 64
clients. The client is the same for both, so the ratio measures what authentication and the
profile query cost. Reference (issue 4): fastapi-users' ``/users/me`` about 800 req/s with a p99
of 300 ms at 64 clients on this kind of machine; the aim is twice its rate and p99 < 100 ms.

    python -m bench me_throughput      (or: python -m bench.me_throughput --seconds 10)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from bench._login_server import running_server

PEER_RPS = 800.0
P99_GOAL_MS = 100.0


async def _load(
    base_url: str, path: str, headers: dict[str, str], clients: int, seconds: float
) -> tuple[float, list[float], int]:
    """(requests per second, latencies in seconds, failures) for ``clients`` concurrent loops."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:

        async def loop() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, failures


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def measure(seconds: float) -> dict[str, float]:
    with running_server() as server, httpx.Client(base_url=server.base_url, timeout=30) as sync:
        [(email, password)] = server.register_verified(sync, 1)
        signed_in = sync.post("/api/v1/auth/login", json={"email": email, "password": password})
        signed_in.raise_for_status()
        auth = {"Authorization": f"Bearer {signed_in.json()['token']}"}

        async def run() -> dict[str, float]:
            await _load(server.base_url, "/api/v1/me", auth, 16, 1.0)  # warm-up
            bare, _, bare_failed = await _load(server.base_url, "/health", {}, 16, seconds)
            me, _, me_failed = await _load(server.base_url, "/api/v1/me", auth, 16, seconds)
            _, latencies, failed_64 = await _load(server.base_url, "/api/v1/me", auth, 64, seconds)
            return {
                "bare_rps": bare,
                "me_rps": me,
                "ratio": me / bare,
                "p99_64_ms": _p99(latencies) * 1000,
                "failures": float(bare_failed + me_failed + failed_64),
            }

        return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args(argv if argv is not None else [])
    result = measure(args.seconds)
    ok = (
        result["failures"] == 0
        and result["me_rps"] >= 2 * PEER_RPS
        and result["p99_64_ms"] < P99_GOAL_MS
    )
    print(f"{'metric':<34}{'value':>12}")
    print(f"{'GET /health req/s (16 clients)':<34}{result['bare_rps']:>12.0f}")
    print(f"{'GET /api/v1/me req/s (16 clients)':<34}{result['me_rps']:>12.0f}")
    print(f"{'ratio /me to bare route':<34}{result['ratio']:>12.2f}")
    print(f"{'p99 /me at 64 clients (ms)':<34}{result['p99_64_ms']:>12.1f}")
    print(f"{'failed requests':<34}{result['failures']:>12.0f}")
    print(f"{'goal (>= 1600 req/s, p99 < 100)':<34}{'PASS' if ok else 'FAIL':>12}")
    return 0 if ok else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
