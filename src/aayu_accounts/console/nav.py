"""The navigation bar: one entry per area, shown by role (the pages check again)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aayu_accounts.console.page import ConsoleContext


@dataclass(frozen=True)
class NavEntry:
    label: str
    href: str
    visible: Callable[[ConsoleContext], bool]


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    current: bool


def _signed_in(ctx: ConsoleContext) -> bool:
    return ctx.signed_in and not ctx.pending_actions


def _in_clinic(ctx: ConsoleContext) -> bool:
    return _signed_in(ctx) and ctx.org is not None


NAV: list[NavEntry] = [
    NavEntry("Account", "/account", _signed_in),
    NavEntry("Clinic", "/clinic", _in_clinic),
    NavEntry(
        "Billing", "/billing", lambda c: _in_clinic(c) and c.has_role("owner", "admin", "billing")
    ),
    NavEntry(
        "Audit", "/audit", lambda c: _in_clinic(c) and c.has_role("owner", "admin", "auditor")
    ),
    NavEntry("Operations", "/operations", lambda c: _signed_in(c) and c.is_platform_admin),
]


def nav_items(ctx: ConsoleContext, path: str) -> list[NavItem]:
    return [
        NavItem(e.label, e.href, path == e.href or path.startswith(e.href + "/"))
        for e in NAV
        if e.visible(ctx)
    ]
