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
_ONCE = "billing_after_commit_once"
_LISTENING = "billing_after_commit_listening"


def _run(sync_session: Any) -> None:
    pending: list[Callable[[], None]] = list(sync_session.info.get(_KEY) or [])
    sync_session.info[_KEY] = []
    sync_session.info[_ONCE] = set()
    for callback in pending:
        callback()


def _drop(sync_session: Any) -> None:
    sync_session.info[_KEY] = []
    sync_session.info[_ONCE] = set()


def after_commit(
    session: AsyncSession, callback: Callable[[], None], *, once_key: object = None
) -> None:
    """Run ``callback`` after ``session`` commits; never when it rolls back. With
    ``once_key``, a second callback with the same key in the same transaction is ignored."""
    sync = session.sync_session
    if not sync.info.get(_LISTENING):
        sync.info[_LISTENING] = True
        event.listen(sync, "after_commit", _run)
        event.listen(sync, "after_rollback", _drop)
    if once_key is not None:
        seen: set[object] = sync.info.setdefault(_ONCE, set())
        if once_key in seen:
            return
        seen.add(once_key)
    sync.info.setdefault(_KEY, []).append(callback)
