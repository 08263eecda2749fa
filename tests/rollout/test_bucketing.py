"""Bucketing is Unleash's, pinned by its published vectors, and monotone in the percentage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aayu_accounts.rollout.bucketing import bucket, in_rollout


def test_unleash_published_vectors() -> None:
    # From Unleash's client-specification (normalizedValue, seed 0).
    assert bucket("gr1", "123") == 73
    assert bucket("groupX", "999") == 25


def test_bucket_range_and_edges() -> None:
    assert all(1 <= bucket("NEW_AUTH", str(i)) <= 100 for i in range(2000))
    assert not in_rollout("gr1", "123", 0)
    assert not in_rollout("gr1", "123", 72)
    assert in_rollout("gr1", "123", 73)
    assert in_rollout("gr1", "123", 100)


def test_group_comes_before_user() -> None:
    # The reversed order ("123:gr1") is the historic Python-client bug; it must differ here.
    assert bucket("gr1", "123") != bucket("123", "gr1")


ids = st.text(min_size=1, max_size=40)
percents = st.integers(min_value=0, max_value=100)


@given(group=ids, user=ids, low=percents, high=percents)
def test_raising_a_percentage_never_removes_anyone(
    group: str, user: str, low: int, high: int
) -> None:
    low, high = sorted((low, high))
    if in_rollout(group, user, low):
        assert in_rollout(group, user, high)


@settings(max_examples=30, deadline=None)
@given(group=st.text(min_size=1, max_size=20), percent=st.integers(min_value=1, max_value=99))
def test_share_enabled_matches_percent_within_sampling_error(group: str, percent: int) -> None:
    population = 4000
    enabled = sum(in_rollout(group, f"user-{i}", percent) for i in range(population))
    expected = population * percent / 100
    # Five standard deviations of a binomial: a correct hash fails this about once in 3.5 million.
    tolerance = 5 * math.sqrt(population * (percent / 100) * (1 - percent / 100)) + 1
    assert abs(enabled - expected) <= tolerance


def test_decisions_match_the_unleash_python_sdk(tmp_path: Path) -> None:
    """The real Unleash SDK, from a bootstrap file, decides the same for every user."""
    unleash = pytest.importorskip("UnleashClient")
    cache_module = pytest.importorskip("UnleashClient.cache")
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(
        json.dumps(
            {
                "version": 1,
                "features": [
                    {
                        "name": "NEW_AUTH",
                        "enabled": True,
                        "strategies": [
                            {
                                "name": "flexibleRollout",
                                "parameters": {
                                    "rollout": "25",
                                    "stickiness": "userId",
                                    "groupId": "v3-rollout",
                                },
                            }
                        ],
                    }
                ],
            }
        )
    )
    cache = cache_module.FileCache("aayu-test", directory=str(tmp_path))
    cache.bootstrap_from_file(bootstrap)
    client = unleash.UnleashClient(
        url="http://127.0.0.1:9",
        app_name="aayu-test",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    try:
        for i in range(2000):
            user = f"user-{i}"
            assert client.is_enabled("NEW_AUTH", {"userId": user}) == in_rollout(
                "v3-rollout", user, 25
            ), user
    finally:
        client.destroy()
