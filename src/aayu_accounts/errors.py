"""One error type, one renderer: every failure leaves as RFC 9457 problem+json with a stable code.

Domain modules subclass :class:`AppError` with names that state the condition (``LastOwner``,
``SubscriptionExists``); clients branch on ``code``, never on ``detail`` wording.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://docs.aayuwell.com/problems/"


class AppError(Exception):
    """An expected failure with an HTTP status and a machine-readable ``code``.

    Subclasses set the class attributes; ``detail`` is a human sentence that never carries
    secrets or another user's data. ``extra`` adds members to the problem body (e.g. the
    reasons a password was refused) and ``headers`` adds response headers (e.g. Retry-After).
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(self.detail)

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem_body(
            status=self.status,
            code=self.code,
            title=self.title,
            detail=self.detail,
            instance=instance,
            extra=self.extra,
        )


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return body


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(AppError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class ValidationFailed(AppError):
    status = 422
    code = "validation_error"
    title = "Validation error"


class MalformedJson(AppError):
    status = 400
    code = "malformed_json"
    title = "Malformed JSON"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class Conflict(AppError):
    status = 409
    code = "conflict"
    title = "Conflict"


class DependencyUnavailable(AppError):
    status = 503
    code = "dependency_unavailable"
    title = "A dependency is unavailable"


class InternalError(AppError):
    status = 500
    code = "internal_error"
    title = "Internal server error"


# --- the one handler -------------------------------------------------------------

_HTTP_STATUS_ERRORS: dict[int, type[AppError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


# Told (status, code) of every problem rendered here; the composition root wires the error
# metrics in, so this module stays at the bottom of the import graph.
ProblemObserver = Callable[[int, str], None]
_problem_observers: list[ProblemObserver] = []


def add_problem_observer(observer: ProblemObserver) -> None:
    if observer not in _problem_observers:
        _problem_observers.append(observer)


def observe_problem(status: int, code: str) -> None:
    for observe in _problem_observers:
        with contextlib.suppress(Exception):
            observe(status, code)


def problem_response(error: AppError, request: Request) -> JSONResponse:
    observe_problem(error.status, error.code)
    return JSONResponse(
        error.problem(instance=request.url.path),
        status_code=error.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=error.headers or None,
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only location, message and type: the offending input may be a password.
    return [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem_response(exc, request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return problem_response(MalformedJson("The request body is not valid JSON."), request)
    error = ValidationFailed(
        "The request does not match the schema.", extra={"errors": _field_errors(exc)}
    )
    return problem_response(error, request)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_type = _HTTP_STATUS_ERRORS.get(exc.status_code)
    if error_type is not None:
        error: AppError = error_type()
    else:
        body = problem_body(
            status=exc.status_code,
            code=f"http_{exc.status_code}",
            title="HTTP error",
            detail=str(exc.detail) if isinstance(exc.detail, str) else "HTTP error",
            instance=request.url.path,
        )
        observe_problem(exc.status_code, body["code"])
        return JSONResponse(
            body,
            status_code=exc.status_code,
            media_type=PROBLEM_CONTENT_TYPE,
            headers=getattr(exc, "headers", None),
        )
    if error.status == 405 and exc.headers:
        error.headers.update(exc.headers)
    return problem_response(error, request)


def error_for_unexpected(exc: BaseException) -> AppError:
    """Log an exception nobody expected (with its trace and the request id) and say what to
    answer: 503 for a dependency outage, else a 500 whose body reveals nothing."""
    if isinstance(exc, AppError):
        # Raised where the app's handlers do not reach (a middleware, e.g. the rate limiter
        # meeting an open Redis breaker): it already says what to answer.
        return exc
    if isinstance(exc, StarletteHTTPException) and exc.status_code in _HTTP_STATUS_ERRORS:
        # The same, in Starlette's words: the body limit's 413 raised from a read that a
        # middleware (not a route) made, e.g. the signature check hashing the body.
        return _HTTP_STATUS_ERRORS[exc.status_code]()
    if _is_dependency_outage(exc):
        log.error("request.dependency_unavailable", error=type(exc).__name__)
        return DependencyUnavailable("Please retry shortly.")
    if _is_unstorable_input(exc):
        # The request's transaction is rolled back by its edge: nothing half-written.
        log.info("request.unstorable_input", error=type(exc).__name__)
        return ValidationFailed("A value cannot be stored (for example a NUL character in text).")
    log.error("request.unhandled", exc_info=exc)
    return InternalError("An unexpected error occurred.")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(error_for_unexpected(exc), request)


# SQLSTATE classes that mean "the database cannot serve now", not "this request is wrong":
# 08 connection exception, 53 insufficient resources (too many connections), 57 operator
# intervention (57014 statement timeout, 57P01/57P02 shutdown, 57P03 still starting up).
# A restart of PostgreSQL produces all of them (tests/faults/test_database_restart.py).
_OUTAGE_SQLSTATE_CLASSES = ("08", "53", "57")


def _sqlstate(exc: DBAPIError) -> str | None:
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _is_unstorable_input(exc: BaseException) -> bool:
    # SQLSTATE class 22, data exception: the value itself cannot be stored (22021 a NUL in
    # text, 22P05 a NUL escape in JSON, 22003 a number out of range). That is the request's
    # fault, never the server's: a 422, like any other invalid input.
    if not isinstance(exc, DBAPIError):
        return False
    code = _sqlstate(exc)
    return code is not None and code.startswith("22")


def _is_dependency_outage(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout | ConnectionError | OSError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = _sqlstate(exc)
    return code is not None and code[:2] in _OUTAGE_SQLSTATE_CLASSES


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
