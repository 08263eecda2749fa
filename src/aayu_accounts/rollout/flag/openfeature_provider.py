"""An OpenFeature provider over this process's flag snapshot.

Python code evaluates our flags through the standard API, with no I/O per evaluation::

    from openfeature import api
    api.set_provider(AayuFlagProvider(app.state.flag_runtime.store))
    api.get_client().get_boolean_value("NEW_AUTH", False, EvaluationContext("user-id"))

The context's ``targeting_key`` is the user id; an ``org_id`` attribute is the clinic. Our
flags are booleans: asking for another type is a type mismatch (the caller's default is
returned, as OpenFeature specifies). A stale snapshot answers "off" for the new-path flags,
as the path router does, with reason STALE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import FlagNotFoundError, TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from aayu_accounts.rollout.flag.snapshot import NEW_PATH_FLAGS
from aayu_accounts.rollout.flag.store import FlagStore


class AayuFlagProvider(AbstractProvider):
    def __init__(self, store: FlagStore) -> None:
        super().__init__()
        self.store = store

    def get_metadata(self) -> Metadata:
        return Metadata(name="aayu-accounts")

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        snapshot = self.store.snapshot
        flag = snapshot.flags.get(flag_key)
        if flag is None:
            raise FlagNotFoundError(f"no flag {flag_key}")
        context = evaluation_context or EvaluationContext()
        org = context.attributes.get("org_id")
        org_id = org if isinstance(org, str) else None
        metadata = {"config_version": snapshot.version}
        if self.store.is_stale() and flag_key in NEW_PATH_FLAGS:
            return FlagResolutionDetails(False, reason=Reason.STALE, flag_metadata=metadata)
        value = snapshot.is_enabled(flag_key, user_id=context.targeting_key, org_id=org_id)
        if not flag.enabled:
            reason = Reason.DISABLED
        elif flag.rollout_percent >= 100 and not flag.requires:
            reason = Reason.STATIC
        else:
            reason = Reason.TARGETING_MATCH
        return FlagResolutionDetails(value, reason=reason, flag_metadata=metadata)

    def _not_boolean(self, flag_key: str) -> TypeMismatchError:
        return TypeMismatchError(f"flag {flag_key} is a boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        raise self._not_boolean(flag_key)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        raise self._not_boolean(flag_key)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        raise self._not_boolean(flag_key)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        raise self._not_boolean(flag_key)
