"""The API map: every router is included here, in one place."""

from __future__ import annotations

from fastapi import FastAPI

from aayu_accounts.api_security.service_api import endpoints as service_endpoints
from aayu_accounts.audit import endpoints as audit_endpoints
from aayu_accounts.billing import endpoints as billing_endpoints
from aayu_accounts.console import install as install_console
from aayu_accounts.identity import endpoints as identity_endpoints
from aayu_accounts.observability import endpoints as observability_endpoints
from aayu_accounts.observability import health
from aayu_accounts.rollout.flag import endpoints as flag_endpoints
from aayu_accounts.rollout.incident import endpoints as incident_endpoints
from aayu_accounts.rollout.user_data import endpoints as user_data_endpoints


def include_routers(app: FastAPI) -> None:
    app.include_router(health.router)
    app.include_router(observability_endpoints.router)
    for router in identity_endpoints.routers:
        app.include_router(router)
    app.include_router(service_endpoints.router)
    app.include_router(billing_endpoints.router)
    app.include_router(flag_endpoints.router)
    app.include_router(incident_endpoints.router)
    app.include_router(user_data_endpoints.router)
    app.include_router(audit_endpoints.router)
    # The web console (HTML pages, left out of the OpenAPI schema) and its static files.
    install_console(app)
