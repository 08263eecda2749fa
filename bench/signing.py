"""Signed service requests: what our checks cost over a bare HMAC, and over the network.

Two measurements, each against a baseline taken in the same run:

1. Verification throughput. The server's real verifier (headers, window, client lookup from
   its cache, HMAC over the canonical string with the body's SHA-256, constant-time compare,
   nonce memory) on a typical introspection request, as a ratio of plain HMAC-SHA256
   computations per second over the same canonical string: the overhead of our checks.
2. Added latency. Against a real ``aayu-accounts serve`` process (SQLite, embedded mode):
   median and p95 of ``GET /health`` (unsigned, no database), of a signed
   ``flags/evaluate`` (signature only: flags come from memory) and of a signed
   ``sessions/introspect`` (signature plus one session lookup), one client, keep-alive.

    python -m bench signing         (or: python -m bench.signing --requests 500)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from aayu_accounts import migrate
from aayu_accounts.api_security.request_signing.directory import ClientDirectory
from aayu_accounts.api_security.request_signing.nonces import MemoryNonceStore
from aayu_accounts.api_security.request_signing.verifier import (
    PresentedKey,
    SignatureVerifier,
    SignedRequest,
)
from aayu_accounts.api_security.service_client import service as client_service
from aayu_accounts.audit.service import Actor
from aayu_accounts.client.signing import canonical_string, secret_key, sign_headers
from aayu_accounts.config import Settings
from aayu_accounts.crypto.keyring import Keyring, install_keyring
from aayu_accounts.db import Database, create_engine

INTROSPECT = "/api/v1/service/sessions/introspect"
FLAGS = "/api/v1/service/flags/evaluate"
BODY = json.dumps({"token": "x" * 43}).encode()


# --- 1. verification throughput ---------------------------------------------------------


def _plain_hmac_rate(key: bytes, seconds: float) -> float:
    message = canonical_string(
        timestamp=str(int(time.time())),
        nonce="n" * 22,
        method="POST",
        path=INTROSPECT,
        query="",
        body=BODY,
    )
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            hmac.new(key, message, hashlib.sha256).digest()
        count += 1000
    return count / seconds


async def _verify_rate(seconds: float) -> tuple[float, float]:
    """(verifications per second, plain HMAC per second) with the real verifier."""
    with tempfile.TemporaryDirectory(prefix="aayu-bench-sign-") as tmp:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'b.db'}", var_dir=Path(tmp)
        )
        engine = create_engine(settings)
        await migrate.upgrade(engine)
        previous = install_keyring(Keyring.generate())
        db = Database(engine)
        try:
            async with db.session_scope() as session:
                issued = await client_service.create_client(
                    session, name="bench", actor=Actor.system("bench")
                )
            verifier = SignatureVerifier(
                ClientDirectory(db, ttl_seconds=3600), MemoryNonceStore(), window_seconds=300
            )
            key = secret_key(issued.secret)

            def request() -> SignedRequest:
                headers = sign_headers(
                    key_id=issued.key_id, secret=key, method="POST", path=INTROSPECT, body=BODY
                )
                return SignedRequest(
                    "POST", INTROSPECT, "", BODY, {k.lower(): v for k, v in headers.items()}
                )

            # Requests are signed ahead of time: the client's work is not the server's cost.
            await verifier.verify(request(), [])  # warms the client cache
            batch = [request() for _ in range(20_000)]
            presented: list[PresentedKey] = []
            done = 0
            started = time.perf_counter()
            while time.perf_counter() - started < seconds and done < len(batch):
                await verifier.verify(batch[done], presented)
                done += 1
            elapsed = time.perf_counter() - started
            return done / elapsed, _plain_hmac_rate(key, seconds)
        finally:
            install_keyring(previous)
            await engine.dispose()


# --- 2. latency over HTTP ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server() -> Iterator[tuple[str, dict[str, str]]]:
    """A serve process and a service client (created with the CLI) sharing one var dir."""
    with tempfile.TemporaryDirectory(prefix="aayu-bench-sign-") as tmp:
        env = {
            **os.environ,
            "AAYU_ENV": "development",
            "AAYU_DATABASE_URL": f"sqlite+aiosqlite:///{Path(tmp) / 'aayu.db'}",
            "AAYU_VAR_DIR": tmp,
            "AAYU_SECRETS_DIR": str(Path(tmp) / "secrets"),
            "AAYU_RUN_WORKER_IN_PROCESS": "false",
            "AAYU_LOG_LEVEL": "WARNING",
            "AAYU_RATE_LIMIT_DEFAULT": "1000000/minute",
        }
        env.pop("AAYU_REDIS_URL", None)
        command = [sys.executable, "-m", "aayu_accounts"]
        subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
        created = subprocess.run(
            [*command, "clients", "create", "bench", "--json", "--rate-limit", "1000000"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        port = _free_port()
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise RuntimeError("server did not become healthy")
            yield base, json.loads(created.stdout)
        finally:
            process.terminate()
            process.wait(timeout=15)


def _latencies(sends: list[Callable[[], httpx.Response]], count: int) -> list[list[float]]:
    """Samples per route, taken round-robin so load drifting on the machine hits all alike."""
    for send in sends:
        for _ in range(min(50, count)):  # warm-up: connections, caches
            send()
    samples: list[list[float]] = [[] for _ in sends]
    for _ in range(count):
        for index, send in enumerate(sends):
            started = time.perf_counter()
            response = send()
            samples[index].append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"unexpected {response.status_code}: {response.text[:300]}")
    return samples


def _latency_rows(count: int) -> list[tuple[str, list[float]]]:
    with _server() as (base, issued), httpx.Client(base_url=base, timeout=10) as http:
        key = secret_key(issued["secret"])

        def signed(path: str, body: bytes) -> Callable[[], httpx.Response]:
            def send() -> httpx.Response:
                headers = sign_headers(
                    key_id=issued["key_id"], secret=key, method="POST", path=path, body=body
                )
                headers["Content-Type"] = "application/json"
                return http.post(path, content=body, headers=headers)

            return send

        names = [
            "GET /health (unsigned)",
            "POST flags/evaluate (signed)",
            "POST sessions/introspect (signed)",
        ]
        sends = [lambda: http.get("/health"), signed(FLAGS, b"{}"), signed(INTROSPECT, BODY)]
        return list(zip(names, _latencies(sends, count), strict=True))


def _ms(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv if argv is not None else [])

    verify_rate, hmac_rate = asyncio.run(_verify_rate(args.seconds))
    print(f"{'measurement':<36} {'value':>14} {'vs baseline':>14}")
    print(f"{'plain HMAC-SHA256 (baseline)':<36} {hmac_rate:>11,.0f}/s {'1.00':>14}")
    print(
        f"{'signed-request verification':<36} {verify_rate:>11,.0f}/s "
        f"{verify_rate / hmac_rate:>14.3f}"
    )

    rows = _latency_rows(args.requests)
    baseline = statistics.median(rows[0][1])
    print(f"\n{'route':<36} {'median ms':>10} {'p95 ms':>8} {'added ms':>9}")
    for name, samples in rows:
        median = statistics.median(samples)
        print(
            f"{name:<36} {median * 1000:>10.2f} {_ms(samples, 0.95):>8.2f} "
            f"{(median - baseline) * 1000:>9.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
