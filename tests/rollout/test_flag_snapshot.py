"""Evaluation order of a snapshot: enabled, dependencies, deny, allow, percentage."""

from __future__ import annotations

from aayu_accounts.rollout.bucketing import bucket
from aayu_accounts.rollout.flag.snapshot import FlagDefinition, FlagSnapshot


def snap(*flags: FlagDefinition) -> FlagSnapshot:
    return FlagSnapshot.build(7, flags)


def test_unknown_and_disabled_flags_are_off() -> None:
    s = snap(FlagDefinition("A", enabled=False, rollout_percent=100))
    assert not s.is_enabled("A", user_id="u")
    assert not s.is_enabled("MISSING", user_id="u")


def test_percentage_uses_the_bucket_group() -> None:
    user = next(str(i) for i in range(1000) if bucket("grp", str(i)) <= 25 < bucket("A", str(i)))
    shared = snap(FlagDefinition("A", enabled=True, rollout_percent=25, bucket_group="grp"))
    own = snap(FlagDefinition("A", enabled=True, rollout_percent=25))
    assert shared.is_enabled("A", user_id=user)
    assert not own.is_enabled("A", user_id=user)


def test_deny_beats_allow_and_allow_beats_percentage() -> None:
    s = snap(
        FlagDefinition(
            "A",
            enabled=True,
            rollout_percent=0,
            allow_user_ids=frozenset({"tester", "both"}),
            deny_user_ids=frozenset({"both"}),
            allow_org_ids=frozenset({"clinic"}),
            deny_org_ids=frozenset({"banned"}),
        )
    )
    assert s.is_enabled("A", user_id="tester")
    assert not s.is_enabled("A", user_id="both")
    assert s.is_enabled("A", user_id="anyone", org_id="clinic")
    assert not s.is_enabled("A", user_id="tester", org_id="banned")
    assert not s.is_enabled("A", user_id="anyone")


def test_full_rollout_needs_no_id_and_partial_needs_one() -> None:
    s = snap(
        FlagDefinition("FULL", enabled=True, rollout_percent=100),
        FlagDefinition("HALF", enabled=True, rollout_percent=99),
    )
    assert s.is_enabled("FULL")
    assert not s.is_enabled("HALF")


def test_dependencies_and_cycles() -> None:
    s = snap(
        FlagDefinition("NEW_DATABASE", enabled=True, rollout_percent=100),
        FlagDefinition("BILLING", enabled=True, rollout_percent=100, requires=("NEW_DATABASE",)),
        FlagDefinition("X", enabled=True, rollout_percent=100, requires=("Y",)),
        FlagDefinition("Y", enabled=True, rollout_percent=100, requires=("X",)),
    )
    assert s.is_enabled("BILLING", user_id="u")
    assert not s.is_enabled("X", user_id="u")
    off = snap(
        FlagDefinition("NEW_DATABASE", enabled=False, rollout_percent=100),
        FlagDefinition("BILLING", enabled=True, rollout_percent=100, requires=("NEW_DATABASE",)),
    )
    assert not off.is_enabled("BILLING", user_id="u")
    assert off.evaluate_all(user_id="u") == {"BILLING": False, "NEW_DATABASE": False}


def test_snapshot_is_immutable() -> None:
    s = snap(FlagDefinition("A", enabled=True))
    try:
        s.flags["B"] = FlagDefinition("B")  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("snapshot mapping accepted a write")
    assert set(s.flags) == {"A"}
