"""Every middleware of the application is pure ASGI (issue 4: authenticated requests are cheap).

Starlette's ``BaseHTTPMiddleware`` runs each request through an extra task and memory streams;
none of ours may use it, and the stack must be the one the app builds (not an empty list that
would make this test pass vacuously)."""

from __future__ import annotations

import inspect

from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware


def test_every_middleware_is_pure_asgi(app: FastAPI) -> None:
    classes = [entry.cls for entry in app.user_middleware]
    assert len(classes) >= 5, classes
    for cls in classes:
        assert inspect.isclass(cls), cls
        assert not issubclass(cls, BaseHTTPMiddleware), cls.__name__
        # Pure ASGI: called with (scope, receive, send) itself.
        assert "scope" in inspect.signature(cls.__call__).parameters, cls.__name__
