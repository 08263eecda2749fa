"""``GET /metrics``: Prometheus text format, behind ``AAYU_METRICS_TOKEN`` outside development."""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from aayu_accounts.config import Settings
from aayu_accounts.errors import Unauthenticated

router = APIRouter(tags=["operations"])


def _registry() -> CollectorRegistry:
    # Several uvicorn workers each keep their own counters; multi-process mode sums them.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def _authorized(request: Request, settings: Settings) -> bool:
    if settings.is_development and not settings.metrics_token:
        return True
    if not settings.metrics_token:
        return False
    supplied = request.headers.get("authorization", "")
    expected = f"Bearer {settings.metrics_token}"
    return hmac.compare_digest(supplied.encode(), expected.encode())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 401: {"description": "Token needed"}},
)
async def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not _authorized(request, settings):
        raise Unauthenticated(
            "A bearer token is required for /metrics.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    for refresh in getattr(request.app.state, "metrics_refreshers", []):
        await refresh()
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
