"""Run in-memory side effects (cache updates) only once the transaction has committed.

Durable side effects go through jobs; these are process-local (the entitlement cache), so a
session event is enough: a rollback discards them, as DESIGN rule 3 asks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

_KEY = "billing_after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    callbacks: list[Callable[[], None]] | None = session.info.get(_KEY)
    if callbacks is None:
        callbacks = []
        session.info[_KEY] = callbacks
        sync = session.sync_session

        def _run(_session: Any) -> None:
            pending = list(session.info.get(_KEY) or [])
            session.info[_KEY] = []
            for callback_ in pending:
                callback_()

        def _drop(_session: Any) -> None:
            session.info[_KEY] = []

        event.listen(sync, "after_commit", _run)
        event.listen(sync, "after_rollback", _drop)
    callbacks.append(callback)
