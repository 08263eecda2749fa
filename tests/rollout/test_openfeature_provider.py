"""Our flags through the standard OpenFeature API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from aayu_accounts.rollout.bucketing import bucket
from aayu_accounts.rollout.flag.openfeature_provider import AayuFlagProvider
from aayu_accounts.rollout.flag.snapshot import FlagDefinition, FlagSnapshot
from aayu_accounts.rollout.flag.store import FlagStore


@pytest.fixture
def store() -> Iterator[FlagStore]:
    flags = FlagStore()
    flags.install(
        FlagSnapshot.build(
            12,
            [
                FlagDefinition("NEW_AUTH", enabled=True, rollout_percent=25, bucket_group="g"),
                FlagDefinition("FALLBACK", enabled=True, rollout_percent=100),
                FlagDefinition("BILLING", enabled=False, allow_org_ids=frozenset({"clinic"})),
            ],
        ),
        source="test",
    )
    api.set_provider(AayuFlagProvider(flags))
    yield flags
    api.clear_providers()


def test_boolean_flags_through_the_standard_client(store: FlagStore) -> None:
    client = api.get_client()
    inside = next(f"u{i}" for i in range(500) if bucket("g", f"u{i}") <= 25)
    outside = next(f"u{i}" for i in range(500) if bucket("g", f"u{i}") > 25)
    assert client.get_boolean_value("NEW_AUTH", False, EvaluationContext(inside)) is True
    assert client.get_boolean_value("NEW_AUTH", True, EvaluationContext(outside)) is False
    details = client.get_boolean_details("FALLBACK", False)
    assert details.value is True
    assert details.reason == Reason.STATIC
    assert details.flag_metadata["config_version"] == 12
    disabled = client.get_boolean_details(
        "BILLING", True, EvaluationContext("u1", {"org_id": "clinic"})
    )
    assert disabled.value is False
    assert disabled.reason == Reason.DISABLED


def test_unknown_flags_and_wrong_types_return_the_default(store: FlagStore) -> None:
    client = api.get_client()
    missing = client.get_boolean_details("NOPE", True)
    assert missing.value is True
    assert missing.error_code == ErrorCode.FLAG_NOT_FOUND
    wrong = client.get_string_details("NEW_AUTH", "fallback")
    assert wrong.value == "fallback"
    assert wrong.error_code == ErrorCode.TYPE_MISMATCH


def test_a_stale_snapshot_answers_off_for_the_new_path(store: FlagStore) -> None:
    store.max_staleness_seconds = -1.0
    details = api.get_client().get_boolean_details("NEW_AUTH", True, EvaluationContext("u"))
    assert details.value is False
    assert details.reason == Reason.STALE
