"""Sign-in failures take the same time whether the email exists or not (issue 4).

Against a real server with the real Argon2id parameters, sends at least 200 sign-ins with an
unknown email and 200 with a known email and a wrong password, interleaved in random order
(so drift in machine load hits both alike), and compares the median times. Goal: medians within
5 % of each other, and byte-identical bodies apart from the request id.

    python -m bench login_timing        (or: python -m bench.login_timing --attempts 300)
"""

from __future__ import annotations

import argparse
import random
import re
import secrets
import statistics
import time

import httpx

from bench._login_server import running_server

GOAL = 0.05
_REQUEST_ID = re.compile(r'"(request_id|instance)"\s*:\s*"[^"]*"')


def _shape(body: bytes) -> bytes:
    return _REQUEST_ID.sub('"\\1":"-"', body.decode()).encode()


def measure(attempts: int) -> dict[str, object]:
    with running_server() as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        [(email, _password)] = server.register_verified(client, 1)
        kinds = ["unknown"] * attempts + ["wrong"] * attempts
        random.shuffle(kinds)
        times: dict[str, list[float]] = {"unknown": [], "wrong": []}
        bodies: dict[str, set[bytes]] = {"unknown": set(), "wrong": set()}
        statuses: set[int] = set()
        # Warm-up: connections, caches, the first query plans.
        for _ in range(5):
            client.post("/api/v1/auth/login", json={"email": email, "password": "warm-up wrong"})
        for kind in kinds:
            address = (
                f"nobody.{secrets.token_hex(4)}@clinic-example.org" if kind == "unknown" else email
            )
            payload = {"email": address, "password": f"wrong {secrets.token_hex(8)}"}
            started = time.perf_counter()
            response = client.post("/api/v1/auth/login", json=payload)
            times[kind].append(time.perf_counter() - started)
            statuses.add(response.status_code)
            bodies[kind].add(_shape(response.content))
    unknown, wrong = statistics.median(times["unknown"]), statistics.median(times["wrong"])
    return {
        "backend": server.backend,
        "attempts_each": attempts,
        "median_unknown_ms": unknown * 1000,
        "median_wrong_ms": wrong * 1000,
        "relative_difference": abs(unknown - wrong) / min(unknown, wrong),
        "statuses": sorted(statuses),
        "identical_bodies": len(bodies["unknown"] | bodies["wrong"]) == 1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attempts", type=int, default=200, help="per kind, at least 200")
    args = parser.parse_args(argv if argv is not None else [])
    result = measure(args.attempts)
    ok = (
        args.attempts >= 200
        and float(str(result["relative_difference"])) <= GOAL
        and result["identical_bodies"] is True
        and result["statuses"] == [401]
    )
    print(f"{'metric':<28}{'value':>14}")
    print(f"{'backend':<28}{result['backend']!s:>14}")
    print(f"{'attempts per kind':<28}{result['attempts_each']:>14}")
    print(f"{'median unknown email (ms)':<28}{result['median_unknown_ms']:>14.1f}")
    print(f"{'median wrong password (ms)':<28}{result['median_wrong_ms']:>14.1f}")
    print(f"{'relative difference':<28}{result['relative_difference']:>13.2%}")
    print(f"{'statuses':<28}{result['statuses']!s:>14}")
    print(f"{'identical bodies':<28}{result['identical_bodies']!s:>14}")
    print(f"{'goal (<= 5 %, one body)':<28}{'PASS' if ok else 'FAIL':>14}")
    return 0 if ok else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
