"""Wiring the console into the app: static files, area routers, HTML error pages."""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aayu_accounts.console.messages import error_text
from aayu_accounts.console.page import ConsoleRedirect, redirect, render
from aayu_accounts.console.templating import STATIC_DIR
from aayu_accounts.errors import AppError, ValidationFailed, error_for_unexpected

# Every area: a subpackage with ``views.py`` exporting ``router`` (and ``templates/``).
# An area whose package is not there yet is skipped; any other import error is raised.
AREAS = ("auth", "account", "clinic", "billing", "audit", "operations", "outbox")
STATIC_PATH = "/static"


def _area_routers() -> list[Any]:
    routers = []
    for area in AREAS:
        name = f"aayu_accounts.console.{area}.views"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name in (name, f"aayu_accounts.console.{area}"):
                continue
            raise
        routers.append(module.router)
    return routers


def _is_console(request: Request) -> bool:
    return bool(getattr(request.state, "aayu_console", False))


def _wrap(original: Any) -> Any:
    async def handler(request: Request, exc: Exception) -> Response:
        if not _is_console(request):
            return await original(request, exc)  # type: ignore[no-any-return]
        error: AppError
        if isinstance(exc, AppError):
            error = exc
        elif isinstance(exc, RequestValidationError):
            error = ValidationFailed("Some fields are not valid.")
        elif isinstance(exc, StarletteHTTPException):
            error = AppError(str(exc.detail))
            error.status = exc.status_code  # type: ignore[misc]
        else:
            error = error_for_unexpected(exc)
        if error.status == 401:
            return redirect(request, "/sign-in")
        return render(
            request,
            "error.html",
            {"status": error.status, "message": error_text(error), "code": error.code},
            status_code=error.status,
        )

    return handler


async def _console_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleRedirect)
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": exc.location})
    return RedirectResponse(exc.location, status_code=303)


class ConsoleErrorPages:
    """An unexpected error on a console page answers the HTML error page. (The security
    headers middleware further out would answer problem+json; this one sits inside it, so the
    page still gets the headers.) The error is logged with its trace by
    ``error_for_unexpected``; the page says nothing of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started or not scope.get("state", {}).get("aayu_console"):
                raise
            error = error_for_unexpected(exc)
            request = Request(scope, receive)
            response = render(
                request,
                "error.html",
                {"status": error.status, "message": error_text(error), "code": error.code},
                status_code=error.status,
            )
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="console-static")
    app.add_middleware(ConsoleErrorPages)
    for router in _area_routers():
        app.include_router(router, include_in_schema=False)
    for exc_type in (AppError, RequestValidationError, StarletteHTTPException, Exception):
        original = app.exception_handlers.get(exc_type)
        if original is not None:
            app.add_exception_handler(exc_type, _wrap(original))
    app.add_exception_handler(ConsoleRedirect, _console_redirect)
