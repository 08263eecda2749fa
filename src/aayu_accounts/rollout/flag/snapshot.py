"""An immutable snapshot of every flag, evaluated in-process with no I/O.

Evaluation order (Unleash's, plus our allow and deny lists and dependencies):

1. an unknown or disabled flag is off;
2. a flag whose required flags are not all on for the same user is off (BILLING needs
   NEW_DATABASE);
3. a denied user or org is off; an allowed user or org is on;
4. otherwise the percentage decides, bucketed on the user id (else the org id) in the flag's
   bucket group. 100 % is on for everyone, even a caller with no id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from aayu_accounts.rollout.bucketing import in_rollout

# A dependency chain deeper than this is treated as a cycle (off), never as a crash.
MAX_DEPENDENCY_DEPTH = 8

NEW_AUTH = "NEW_AUTH"
NEW_DATABASE = "NEW_DATABASE"
BILLING = "BILLING"
SHADOW_WRITES = "SHADOW_WRITES"
FALLBACK = "FALLBACK"
NEW_PATH_FLAGS = (NEW_AUTH, NEW_DATABASE, BILLING)
BUILTIN_FLAGS = (NEW_AUTH, NEW_DATABASE, BILLING, SHADOW_WRITES, FALLBACK)


@dataclass(frozen=True, slots=True)
class FlagDefinition:
    key: str
    enabled: bool = False
    rollout_percent: int = 0
    allow_user_ids: frozenset[str] = frozenset()
    deny_user_ids: frozenset[str] = frozenset()
    allow_org_ids: frozenset[str] = frozenset()
    deny_org_ids: frozenset[str] = frozenset()
    requires: tuple[str, ...] = ()
    bucket_group: str | None = None

    @property
    def group_id(self) -> str:
        return self.bucket_group or self.key


@dataclass(frozen=True, slots=True)
class FlagSnapshot:
    """Every flag at one config ``version``. Never mutated: a change builds a new snapshot."""

    version: int
    flags: Mapping[str, FlagDefinition]

    @classmethod
    def build(cls, version: int, definitions: Iterable[FlagDefinition]) -> FlagSnapshot:
        return cls(version, MappingProxyType({d.key: d for d in definitions}))

    @classmethod
    def empty(cls) -> FlagSnapshot:
        """Version 0, every flag off: what an instance serves before its first load."""
        return cls.build(0, ())

    def is_enabled(
        self, key: str, *, user_id: str | None = None, org_id: str | None = None
    ) -> bool:
        return self._evaluate(key, user_id, org_id, 0)

    def evaluate_all(
        self, *, user_id: str | None = None, org_id: str | None = None
    ) -> dict[str, bool]:
        return {key: self._evaluate(key, user_id, org_id, 0) for key in sorted(self.flags)}

    def _evaluate(self, key: str, user_id: str | None, org_id: str | None, depth: int) -> bool:
        flag = self.flags.get(key)
        if flag is None or not flag.enabled or depth > MAX_DEPENDENCY_DEPTH:
            return False
        for required in flag.requires:
            if not self._evaluate(required, user_id, org_id, depth + 1):
                return False
        if (user_id is not None and user_id in flag.deny_user_ids) or (
            org_id is not None and org_id in flag.deny_org_ids
        ):
            return False
        if (user_id is not None and user_id in flag.allow_user_ids) or (
            org_id is not None and org_id in flag.allow_org_ids
        ):
            return True
        if flag.rollout_percent >= 100:
            return True
        stickiness = user_id if user_id is not None else org_id
        if stickiness is None:
            return False
        return in_rollout(flag.group_id, stickiness, flag.rollout_percent)

    def describe(self) -> dict[str, dict[str, object]]:
        """A plain, JSON-ready view (for incident reports: flags before and after)."""
        return {
            key: {"enabled": flag.enabled, "rollout_percent": flag.rollout_percent}
            for key, flag in sorted(self.flags.items())
        }
