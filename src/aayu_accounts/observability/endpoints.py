"""``GET /metrics``: Prometheus text format, behind ``AAYU_METRICS_TOKEN`` outside development."""

from __future__ import annotations

import asyncio
import hmac

import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aayu_accounts.config import Settings
from aayu_accounts.errors import Unauthenticated
from aayu_accounts.observability.metrics import collector_registry

router = APIRouter(tags=["operations"])
log = structlog.get_logger(__name__)


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
        # A refresher that needs the database must not take /metrics down during the very
        # outage an operator is trying to see: the gauges it feeds keep their last value.
        try:
            async with asyncio.timeout(2):
                await refresh()
        except Exception as exc:
            log.warning("metrics.refresh_failed", error=type(exc).__name__)
    return Response(generate_latest(collector_registry()), media_type=CONTENT_TYPE_LATEST)
