"""Resilience, declared once per outbound dependency (DESIGN rule 7).

Each dependency — database, Redis, Stripe, SMTP, secret store — has one :class:`Dependency`
holding its policy: a timeout per attempt, a tenacity retry policy (exponential backoff with
full jitter, a capped number of attempts, never a retry of a 4xx or another permanent answer)
and a ``pybreaker`` circuit breaker. Other areas call through it::

    result = await dependency("smtp").call(lambda: aiosmtplib.send(...))

pybreaker's own asyncio support needs tornado, so :meth:`Dependency.call` drives the breaker
through its public ``call`` with the recorded outcome; the state machine (closed, open,
half-open after ``reset_timeout``) stays the library's.

Breaker state changes are told to observers (:func:`add_state_observer`): the observability
area exports them as ``aayu_circuit_breaker_state`` and raises an alert while one is open, so
this module needs no knowledge of metrics or alerts (kit sits below them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import pybreaker
import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from aayu_accounts.config import Settings
from aayu_accounts.errors import DependencyUnavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")

DATABASE, REDIS, STRIPE, SMTP, SECRET_STORE = "database", "redis", "stripe", "smtp", "secret_store"
OBJECT_STORE = "object_store"  # S3-compatible storage of audit checkpoints and archives

StateObserver = Callable[[str, str, str], None]  # (dependency, old state, new state)
OutcomeObserver = Callable[[str, str], None]  # (dependency, ok | error | rejected | timeout)


class BreakerOpen(DependencyUnavailable):
    """The dependency's breaker is open: the call was refused without being attempted.

    An ``AppError`` (503 ``dependency_unavailable``), so a request that meets it fails fast
    with the right answer wherever it is raised.
    """

    def __init__(self, dependency: str, retry_after: float | None = None) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
        super().__init__("Please retry shortly.", headers=headers)
        self.dependency = dependency


@dataclass(frozen=True)
class Policy:
    """How one dependency is called. Times in seconds."""

    name: str
    timeout_seconds: float
    attempts: int  # the first call included; 1 means no retry
    backoff_initial_seconds: float
    backoff_max_seconds: float
    breaker_fail_max: int
    breaker_reset_seconds: float


# Defaults; :func:`configure` applies the settings that exist for them. The database is never
# retried here: a request's transaction is not safe to replay blindly, and pool pre-ping
# already replaces dead connections before they are handed out.
DEFAULT_POLICIES: dict[str, Policy] = {
    DATABASE: Policy(DATABASE, 10.0, 1, 0.1, 1.0, 3, 5.0),
    REDIS: Policy(REDIS, 0.5, 2, 0.05, 0.2, 3, 5.0),
    STRIPE: Policy(STRIPE, 10.0, 3, 0.5, 5.0, 5, 30.0),
    SMTP: Policy(SMTP, 10.0, 3, 0.5, 5.0, 5, 60.0),
    SECRET_STORE: Policy(SECRET_STORE, 5.0, 4, 0.2, 2.0, 5, 30.0),
    OBJECT_STORE: Policy(OBJECT_STORE, 10.0, 3, 0.5, 5.0, 5, 60.0),
}


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (stripe, httpx, hvac, azure and most SDKs)."""
    for attribute in ("status_code", "http_status", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def is_client_error(exc: BaseException) -> bool:
    """A 4xx: the dependency answered and said no. Retrying repeats the same refusal."""
    status = status_of(exc)
    return status is not None and 400 <= status < 500


def is_smtp_permanent(exc: BaseException) -> bool:
    """SMTP turns HTTP around: 4xx replies are transient, 5xx are permanent (RFC 5321 §4.2.1)."""
    code = getattr(exc, "code", None)
    module = type(exc).__module__ or ""
    return module.startswith("aiosmtplib") and isinstance(code, int) and 500 <= code < 600


PERMANENT: dict[str, Callable[[BaseException], bool]] = {SMTP: is_smtp_permanent}


class _StateListener(pybreaker.CircuitBreakerListener):
    def __init__(self, dependency: Dependency) -> None:
        self.dependency = dependency

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else "closed"
        new = new_state.name
        if new == pybreaker.STATE_OPEN:
            self.dependency.opened_at = time.monotonic()
        log.warning("breaker.state_change", dependency=self.dependency.name, old=old, new=new)
        for observe in tuple(_state_observers):
            try:
                observe(self.dependency.name, old, new)
            except Exception:  # an observer must never break the caller's request
                log.exception("breaker.observer_failed", dependency=self.dependency.name)


class Dependency:
    """One outbound dependency: its policy and its breaker."""

    def __init__(self, policy: Policy) -> None:
        self.name = policy.name
        self.policy = policy
        self.opened_at = 0.0
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=policy.breaker_fail_max,
            reset_timeout=policy.breaker_reset_seconds,
            exclude=[self.is_permanent],
            listeners=[_StateListener(self)],
            name=policy.name,
        )

    # --- state -----------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return str(self.breaker.current_state)

    @property
    def available(self) -> bool:
        return self.state != pybreaker.STATE_OPEN

    def is_permanent(self, exc: BaseException) -> bool:
        """An answer rather than an outage: not retried, not counted against the breaker."""
        if isinstance(exc, BreakerOpen):
            return False
        special = PERMANENT.get(self.name)
        return is_client_error(exc) or (special is not None and special(exc))

    def allow(self) -> None:
        """Raise :class:`BreakerOpen` while the breaker is open and its timeout runs.

        Once ``reset_timeout`` has passed the breaker goes half-open and calls go through as
        trials: the first success closes it, a failure opens it again.
        """
        if self.breaker.current_state != pybreaker.STATE_OPEN:
            return
        remaining = self.opened_at + self.policy.breaker_reset_seconds - time.monotonic()
        if remaining > 0:
            _observe_outcome(self.name, "rejected")
            raise BreakerOpen(self.name, remaining)
        with contextlib.suppress(pybreaker.CircuitBreakerError):
            self.breaker.half_open()

    def record_success(self) -> None:
        if self.breaker.current_state == pybreaker.STATE_CLOSED and not self.breaker.fail_counter:
            return  # the common case costs nothing
        # Open with time left: a late success from before the outage proves nothing.
        with contextlib.suppress(pybreaker.CircuitBreakerError):
            self.breaker.call(_succeed)

    def record_failure(self, exc: BaseException) -> None:
        with contextlib.suppress(BaseException):
            self.breaker.call(_fail, exc)

    def configure(self, policy: Policy) -> None:
        self.policy = policy
        self.breaker.fail_max = policy.breaker_fail_max
        self.breaker.reset_timeout = policy.breaker_reset_seconds

    def reset(self) -> None:
        """Close the breaker (tests, and an operator who knows the dependency is back)."""
        if self.breaker.current_state != pybreaker.STATE_CLOSED:
            self.breaker.close()

    # --- calling ---------------------------------------------------------------------
    async def breaker_call(
        self, operation: Callable[[], Awaitable[T]], *, attempt_timeout: float | None = None
    ) -> T:
        """One attempt, through the breaker, bounded by the policy's timeout."""
        self.allow()
        try:
            async with asyncio.timeout(attempt_timeout or self.policy.timeout_seconds):
                result = await operation()
        except TimeoutError as exc:
            _observe_outcome(self.name, "timeout")
            self.record_failure(exc)
            raise
        except Exception as exc:
            _observe_outcome(self.name, "error")
            if not self.is_permanent(exc):
                self.record_failure(exc)
            raise
        _observe_outcome(self.name, "ok")
        self.record_success()
        return result

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        attempt_timeout: float | None = None,
        attempts: int | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """Call with the policy: timeout per attempt, retries with backoff, breaker.

        Raises the last error when every attempt failed, the first permanent (4xx) error at
        once, and :class:`BreakerOpen` without calling while the breaker is open.
        """

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, BreakerOpen):
                return False
            if retry_if is not None:
                return retry_if(exc)
            return not self.is_permanent(exc)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts or self.policy.attempts),
            wait=wait_random_exponential(
                multiplier=self.policy.backoff_initial_seconds,
                max=self.policy.backoff_max_seconds,
            ),
            retry=retry_if_exception(transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self.breaker_call(operation, attempt_timeout=attempt_timeout)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


def _succeed() -> None:
    return None


def _fail(exc: BaseException) -> None:
    raise exc


_dependencies: dict[str, Dependency] = {
    name: Dependency(policy) for name, policy in DEFAULT_POLICIES.items()
}
_state_observers: list[StateObserver] = []
_outcome_observers: list[OutcomeObserver] = []


def dependency(name: str) -> Dependency:
    """The dependency called ``name`` (database, redis, stripe, smtp, secret_store)."""
    return _dependencies[name]


def all_dependencies() -> list[Dependency]:
    return list(_dependencies.values())


def add_state_observer(observer: StateObserver) -> None:
    if observer not in _state_observers:
        _state_observers.append(observer)


def remove_state_observer(observer: StateObserver) -> None:
    with contextlib.suppress(ValueError):
        _state_observers.remove(observer)


def add_outcome_observer(observer: OutcomeObserver) -> None:
    if observer not in _outcome_observers:
        _outcome_observers.append(observer)


def _observe_outcome(name: str, outcome: str) -> None:
    for observe in _outcome_observers:
        with contextlib.suppress(Exception):
            observe(name, outcome)


def configure(settings: Settings) -> None:
    """Apply the settings that tune a policy (timeouts, retries, breaker thresholds)."""
    policies = dict(DEFAULT_POLICIES)
    policies[DATABASE] = replace(
        policies[DATABASE],
        timeout_seconds=settings.db_statement_timeout_seconds,
        breaker_fail_max=settings.db_breaker_failures,
        breaker_reset_seconds=settings.db_breaker_reset_seconds,
    )
    policies[REDIS] = replace(
        policies[REDIS],
        timeout_seconds=settings.redis_timeout_seconds,
        breaker_reset_seconds=settings.redis_breaker_reset_seconds,
    )
    policies[SMTP] = replace(policies[SMTP], timeout_seconds=settings.smtp_timeout_seconds)
    store = policies[SECRET_STORE]
    # The secret-store settings belong to the crypto area; read defensively so either side
    # can change without breaking start-up.
    policies[SECRET_STORE] = replace(
        store,
        timeout_seconds=float(
            getattr(settings, "secret_store_timeout_seconds", store.timeout_seconds)
        ),
        attempts=int(getattr(settings, "secret_store_retries", store.attempts - 1)) + 1,
        breaker_fail_max=int(
            getattr(settings, "secret_store_breaker_failures", store.breaker_fail_max)
        ),
        breaker_reset_seconds=float(
            getattr(settings, "secret_store_breaker_reset_seconds", store.breaker_reset_seconds)
        ),
    )
    policies[OBJECT_STORE] = replace(
        policies[OBJECT_STORE],
        timeout_seconds=float(
            getattr(settings, "audit_s3_timeout_seconds", policies[OBJECT_STORE].timeout_seconds)
        ),
    )
    for name, policy in policies.items():
        _dependencies[name].configure(policy)


# --- the database: a breaker fed by the engine's own events ---------------------------


def _is_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, OSError | TimeoutError | ConnectionError)


def guard_engine(engine: AsyncEngine) -> None:
    """Put the database breaker in front of new connections of ``engine``.

    Failed connects and lost connections count as failures; while the breaker is open a new
    connection is refused at once with :class:`BreakerOpen` (503) instead of waiting for a
    connect timeout, so requests fail fast and the pool does not pile up waiters. A
    connection made or handed out successfully counts as a success, which closes a half-open
    breaker: recovery needs no operator. Idempotent.
    """
    sync_engine = engine.sync_engine
    if sync_engine.__dict__.get("_aayu_guarded"):
        return
    sync_engine.__dict__["_aayu_guarded"] = True
    database = dependency(DATABASE)

    @event.listens_for(sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        database.allow()
        # Connecting here (the event may return the connection) is the one place that sees
        # every failed connect, timeouts included, before SQLAlchemy wraps or retries it.
        try:
            return dialect.loaded_dbapi.connect(*cargs, **cparams)
        except Exception as exc:
            if _is_outage(exc) or _is_outage(exc.__cause__):
                database.record_failure(exc)
            raise

    @event.listens_for(sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        original = context.original_exception
        if isinstance(original, BreakerOpen):
            return
        if context.is_disconnect or _is_outage(original):
            database.record_failure(original)

    @event.listens_for(sync_engine, "connect")
    def _on_connect(_dbapi_connection: Any, _record: Any) -> None:
        database.record_success()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        database.record_success()
