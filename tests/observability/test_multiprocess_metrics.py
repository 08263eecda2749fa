"""``aayu-accounts serve --workers 2``: prometheus-client's multi-process mode, so ``/metrics``
from whichever worker answers sums every worker's counts, and no gauge grows a label per
process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.client.server import free_port, server_stack

TOKEN = "p" * 40
HEALTH = re.compile(
    r'^aayu_http_requests_total\{method="GET",route="/health",status_class="2xx"\} (\S+)$',
    flags=re.MULTILINE,
)


def _per_process_health_counts(directory: Path) -> dict[str, float]:
    """/health requests counted by each worker, read from that worker's own file."""
    counts: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.split("_", 1)[1]
        for family in MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
            [str(path)], accumulate=True
        ):
            for sample in family.samples:
                if (
                    sample.name == "aayu_http_requests_total"
                    and sample.labels.get("route") == "/health"
                ):
                    counts[pid] = counts.get(pid, 0.0) + sample.value
    return counts


def _serve(port: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aayu_accounts", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _health_burst(url: str, count: int) -> None:
    # A fresh connection per request, sent together: the kernel hands them to both workers.
    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/health")).status_code == 200

    await asyncio.gather(*(one() for _ in range(count)))


async def _scrape(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.committing
@pytest.mark.timeout(120)
async def test_two_workers_report_one_sum(backend: str, tmp_path: Path) -> None:
    if backend != "postgresql":
        pytest.skip("several workers are the PostgreSQL deployment")
    async with server_stack(backend, tmp_path) as stack:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**stack.env, "AAYU_METRICS_TOKEN": TOKEN}
        directory = tmp_path / "prometheus-multiproc"
        process = _serve(port, env, stack.cwd)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, f"serve exited with {process.returncode}"
                assert time.monotonic() < deadline, "serve --workers 2 did not answer in time"
                try:
                    async with httpx.AsyncClient(timeout=0.5) as probe:
                        if (await probe.get(url + "/health")).status_code == 200:
                            break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            # serve set PROMETHEUS_MULTIPROC_DIR under the var dir, fresh, for its workers.
            assert directory.is_dir()

            # The readiness probes that reached a worker (a slow one may have timed out here).
            await asyncio.sleep(0.5)
            sent = sum(_per_process_health_counts(directory).values())
            assert sent >= 1
            for _ in range(20):  # until both workers have served some
                await _health_burst(url, 20)
                sent += 20
                if len([c for c in _per_process_health_counts(directory).values() if c]) >= 2:
                    break
            per_process = _per_process_health_counts(directory)
            assert len([c for c in per_process.values() if c]) >= 2, per_process

            # Whichever worker answers the scrape reports the sum of both.
            totals = set()
            for _ in range(6):
                text = await _scrape(url)
                found = HEALTH.findall(text)
                assert len(found) == 1, found  # one series, not one per worker
                totals.add(float(found[0]))
                assert 'pid="' not in text  # every gauge aggregates across workers
                assert "aayu_process_start_time_seconds " in text
            assert totals == {float(sent)}, (totals, sent, per_process)
            assert sum(per_process.values()) == sent

            # A worker killed without a goodbye: uvicorn starts another, and the next scrape
            # forgets the dead one's live gauges (pool, health, leader) but keeps its counts.
            victim = next(int(pid) for pid, count in per_process.items() if count)
            assert victim != process.pid
            assert list(directory.glob(f"gauge_live*_{victim}.db"))
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while list(directory.glob(f"gauge_live*_{victim}.db")):
                assert time.monotonic() < deadline, "the dead worker's live gauges stayed"
                with contextlib.suppress(httpx.HTTPError):
                    await _scrape(url)
                await asyncio.sleep(0.3)
            found = HEALTH.findall(await _scrape(url))
            assert [float(v) for v in found] == [float(sent)], found
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
