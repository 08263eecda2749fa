"""``/api/v1/service/*``: signed calls from the scribe backend (API.md, *Service requests*)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from aayu_accounts.api_security.service_api import service
from aayu_accounts.api_security.service_api.deps import CurrentServiceClient
from aayu_accounts.api_security.service_api.schemas import (
    EntitlementRequest,
    EntitlementResponse,
    FlagsRequest,
    FlagsResponse,
    IntrospectRequest,
    IntrospectResponse,
    UsageAccepted,
    UsageRequest,
)
from aayu_accounts.billing.usage import service as usage_service
from aayu_accounts.db import ReadSession, WriteSession
from aayu_accounts.identity.runtime import get_runtime
from aayu_accounts.rollout.wiring import flag_runtime

SIGNATURE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "signature_missing, signature_unknown_key, signature_expired, "
        "signature_invalid or signature_replayed (problem+json)"
    },
    429: {"description": "rate_limited: the client's per-second limit (problem+json)"},
}

router = APIRouter(prefix="/api/v1/service", tags=["service"], responses=SIGNATURE_ERRORS)


@router.post("/sessions/introspect", response_model_exclude_none=True)
async def introspect(
    body: IntrospectRequest, request: Request, session: WriteSession, _caller: CurrentServiceClient
) -> IntrospectResponse:
    """Whether a session token is live, and whose (``active: false`` for anything else)."""
    return await service.introspect(session, get_runtime(request), body.token)


@router.post("/entitlements/check")
async def check_entitlement(
    body: EntitlementRequest, request: Request, session: ReadSession, _caller: CurrentServiceClient
) -> EntitlementResponse:
    """May this user of this clinic use this feature now."""
    return await service.check_entitlement(
        session,
        flag_runtime(request.app).store.snapshot,
        org_id=body.org_id,
        user_id=body.user_id,
        feature=body.feature,
    )


@router.post("/usage", status_code=status.HTTP_202_ACCEPTED)
async def record_usage(
    body: UsageRequest, session: WriteSession, _caller: CurrentServiceClient
) -> UsageAccepted:
    """Record usage; the same ``event_id`` counts once (a redelivery answers 202 too)."""
    recorded = await usage_service.record_usage(
        session,
        event_id=body.event_id,
        org_id=body.org_id,
        user_id=body.user_id,
        metric=body.metric,
        quantity=body.quantity,
        occurred_at=body.occurred_at,
    )
    return UsageAccepted(recorded=recorded)


@router.post("/flags/evaluate")
async def evaluate_flags(
    body: FlagsRequest, request: Request, _caller: CurrentServiceClient
) -> FlagsResponse:
    """Every flag for this user and clinic, from this instance's snapshot."""
    store = flag_runtime(request.app).store
    return FlagsResponse(
        flags=service.evaluate_flags(
            store.snapshot, stale=store.is_stale(), user_id=body.user_id, org_id=body.org_id
        )
    )
