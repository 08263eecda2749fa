"""Run in-memory side effects (cache updates) only once the transaction has committed.

Durable side effects go through jobs; these are process-local (the entitlement cache), so a
session event is enough: a rollback discards them, as DESIGN rule 3 asks.

The listeners are module-level functions that find the callbacks in the session's ``info``:
a closure over the session would make a reference cycle, and a session collected late by the
garbage collector warns from inside whatever code runs at that moment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

_KEY = "billing_after_commit"
_LISTENING = "billing_after_commit_listening"


def _run(sync_session: Any) -> None:
    pending: list[Callable[[], None]] = list(sync_session.info.get(_KEY) or [])
    sync_session.info[_KEY] = []
    for callback in pending:
        callback()


def _drop(sync_session: Any) -> None:
    sync_session.info[_KEY] = []


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    sync = session.sync_session
    if not sync.info.get(_LISTENING):
        sync.info[_LISTENING] = True
        event.listen(sync, "after_commit", _run)
        event.listen(sync, "after_rollback", _drop)
    sync.info.setdefault(_KEY, []).append(callback)
