"""Authenticated requests are cheap: ``GET /api/v1/me`` against a bare route (issue 4).

Against a real ``aayu-accounts serve`` process, in the same run: requests per second of
``GET /api/v1/me`` (Bearer session, cached lookup, no write per request) and of ``GET /health``
(no authentication, no database) at 16 concurrent clients, and the p99 latency of ``/me`` at 64
clients. The client is the same for both, so the ratio measures what authentication and the
profile query cost. A plain FastAPI route (no middleware, same uvicorn) is measured too, so the
cost of the whole stack shows as a ratio that does not depend on how busy the machine is. The
load generator speaks HTTP/1.1 on kept-alive connections itself, so it does not take the CPU
the server needs. Reference (issue 4): fastapi-users' ``/users/me`` about 800 req/s with a p99
of 300 ms at 64 clients on this kind of machine; the aim is twice its rate and p99 < 100 ms.

    python -m bench me_throughput      (or: python -m bench.me_throughput --seconds 10)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from bench._login_server import _free_port, running_server
from bench._raw_http import RawConnection

PEER_RPS = 800.0
P99_GOAL_MS = 100.0


async def _load(
    base_url: str, path: str, headers: dict[str, str], clients: int, seconds: float
) -> tuple[float, list[float], int]:
    """(requests per second, latencies in seconds, failures) for ``clients`` concurrent loops.

    Each loop is one kept-alive HTTP/1.1 connection speaking the protocol directly: the load
    generator shares the machine's cores with the server, and a full client library would
    spend more CPU per request than the route under test (it used to cap this benchmark).
    """
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal failures
        async with RawConnection(base_url) as connection:
            request = connection.request_bytes(path, headers)
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status = await connection.send(request)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, failures


# The reference: one FastAPI route with no middleware, served by uvicorn as ``serve`` runs it.
_BARE_APP = """
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False,
            server_header=False)
"""


@contextmanager
def bare_fastapi() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", _BARE_APP.replace("{port}", str(port))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def measure(seconds: float) -> dict[str, float]:
    with running_server() as server, httpx.Client(base_url=server.base_url, timeout=30) as sync:
        [(email, password)] = server.register_verified(sync, 1)
        signed_in = sync.post("/api/v1/auth/login", json={"email": email, "password": password})
        signed_in.raise_for_status()
        auth = {"Authorization": f"Bearer {signed_in.json()['token']}"}

        async def run(fastapi_url: str) -> dict[str, float]:
            await _load(server.base_url, "/api/v1/me", auth, 16, 1.0)  # warm-up
            bare, _, bare_failed = await _load(server.base_url, "/health", {}, 16, seconds)
            me, _, me_failed = await _load(server.base_url, "/api/v1/me", auth, 16, seconds)
            _, latencies, failed_64 = await _load(server.base_url, "/api/v1/me", auth, 64, seconds)
            plain, _, plain_failed = await _load(fastapi_url, "/health", {}, 16, seconds)
            return {
                "bare_rps": bare,
                "me_rps": me,
                "ratio": me / bare,
                "p99_64_ms": _p99(latencies) * 1000,
                "fastapi_rps": plain,
                "failures": float(bare_failed + me_failed + failed_64 + plain_failed),
                "load_average": os.getloadavg()[0],
            }

        with bare_fastapi() as fastapi_url:
            return asyncio.run(run(fastapi_url))


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
    print(f"{'plain FastAPI route req/s':<34}{result['fastapi_rps']:>12.0f}")
    ratio_plain = result["me_rps"] / result["fastapi_rps"]
    print(f"{'ratio /me to plain FastAPI':<34}{ratio_plain:>12.2f}")
    print(f"{'p99 /me at 64 clients (ms)':<34}{result['p99_64_ms']:>12.1f}")
    print(f"{'failed requests':<34}{result['failures']:>12.0f}")
    print(f"{'load average (1 min) at the end':<34}{result['load_average']:>12.2f}")
    print(f"{'goal (>= 1600 req/s, p99 < 100)':<34}{'PASS' if ok else 'FAIL':>12}")
    return 0 if ok else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
