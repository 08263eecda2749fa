"""The verified service client of a request (set by the signing middleware)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aayu_accounts.api_security.request_signing.errors import SignatureMissing
from aayu_accounts.api_security.request_signing.middleware import ServiceCaller


def service_caller(request: Request) -> ServiceCaller:
    # Defence in depth: the middleware refuses unsigned requests before routing; should a
    # route ever be mounted where the middleware does not run, it still refuses.
    caller = getattr(request.state, "service_client", None)
    if not isinstance(caller, ServiceCaller):
        raise SignatureMissing("This endpoint takes signed service requests only.")
    return caller


CurrentServiceClient = Annotated[ServiceCaller, Depends(service_caller)]
