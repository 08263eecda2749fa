"""The full load run as a test: 1,000 concurrent signed-in sessions, 100,000 requests, no errors
and no leak. Too slow for CI (several minutes, most of the machine): marked ``long``, run by
``make test-long``. The same code is ``python -m bench.load_run --full`` (bench/load_run.py),
which also prints the latency table; docs/performance.md records a run.
"""

from __future__ import annotations

import pytest
from bench import load_run

from tests.fixtures.services import postgres_available, redis_available, require


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_a_thousand_sessions_for_a_hundred_thousand_requests_without_errors_or_leak() -> None:
    require("PostgreSQL", postgres_available())
    require("Redis", redis_available())
    result = load_run.measure(1000, load_run.FULL_REQUESTS, None)
    assert result["backend"] == "postgresql"
    assert result["mixed_requests_total"] >= load_run.FULL_REQUESTS
    assert result["mix"]["errors"] == 0
    assert result["baseline"]["errors"] == 0
    rss = result["rss_mib"]
    growth = (rss["at_end"] - rss["after_warmup"]) / rss["after_warmup"]
    assert growth <= load_run.RSS_GROWTH_GOAL, rss
