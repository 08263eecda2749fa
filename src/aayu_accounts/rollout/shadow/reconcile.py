"""Compare the legacy store and the database, document by document, without copying data.

The report names documents by a hash of their subject and by key, and differences by
top-level field name and a short hash of each side's value: enough to find and fix a
divergence, nothing a reader could learn a patient's or clinician's data from.

Only subjects of v2.5 users (``lg_`` subjects) have two stores; new-store-only users are not
compared.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.observability import metrics
from aayu_accounts.rollout.legacy.store import LegacyDocumentStore
from aayu_accounts.rollout.user_data.repository import DatabaseDocumentStore

LEGACY_SUBJECT_PREFIX = "lg_"
MISSING = "<missing>"


def short_hash(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Divergence:
    subject: str  # hash of the subject
    key: str
    kind: str  # "missing_in_database", "missing_in_legacy", "different"
    fields: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class ReconcileReport:
    subjects: int = 0
    documents: int = 0
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.divergences

    def as_dict(self) -> dict[str, Any]:
        return {
            "subjects": self.subjects,
            "documents": self.documents,
            "divergent": len(self.divergences),
            "divergences": [asdict(d) for d in self.divergences],
        }


def _field_differences(legacy: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, str]]:
    differences: dict[str, dict[str, str]] = {}
    for name in sorted(set(legacy) | set(new)):
        left = short_hash(legacy[name]) if name in legacy else MISSING
        right = short_hash(new[name]) if name in new else MISSING
        if left != right:
            differences[name] = {"legacy": left, "database": right}
    return differences


async def reconcile(session: AsyncSession, legacy: LegacyDocumentStore) -> ReconcileReport:
    database = DatabaseDocumentStore(session)
    subjects = {s for s in await database.subjects() if s.startswith(LEGACY_SUBJECT_PREFIX)}
    subjects |= set(await legacy.subjects())
    report = ReconcileReport(subjects=len(subjects))
    for subject in sorted(subjects):
        named = short_hash(subject)
        keys = set(await legacy.list_keys(subject)) | set(await database.list_keys(subject))
        for key in sorted(keys):
            report.documents += 1
            left = await legacy.get(subject, key)
            right = await database.get(subject, key)
            if left is None or right is None:
                kind = "missing_in_database" if right is None else "missing_in_legacy"
                report.divergences.append(Divergence(named, key, kind))
            elif short_hash(left) != short_hash(right):
                report.divergences.append(
                    Divergence(named, key, "different", _field_differences(left, right))
                )
    metrics.SHADOW_DIVERGENCES.set(len(report.divergences))
    return report
