"""Clinic: the members (invite, change role, deactivate/reactivate, MFA status), the clinic's
settings (require MFA, idle timeout) and the BAA record. Owners and admins manage; every
member sees the clinic's name and settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.console.forms import FormError, parse
from aayu_accounts.console.page import (
    ConsoleContext,
    SignedInPage,
    attempt_parsed,
    org_access,
    read,
    read_form,
    redirect,
    render,
)
from aayu_accounts.errors import AppError
from aayu_accounts.identity.invitation import service as invitation_service
from aayu_accounts.identity.membership import service as membership_service
from aayu_accounts.identity.organization import service as org_service
from aayu_accounts.identity.permissions import ROLES_ONLY_OWNER_GRANTS, Permission, Role
from aayu_accounts.identity.runtime import get_runtime
from aayu_accounts.identity.schemas import BaaIn, InvitationIn, MemberPatchIn, OrgPatchIn

router = APIRouter()

IDLE_CHOICES = (5, 10, 15)


def _roles_for(ctx: ConsoleContext) -> list[str]:
    """The roles the caller may hand out (only an owner grants ownership)."""
    return [
        r.value for r in Role if r not in ROLES_ONLY_OWNER_GRANTS or ctx.role == Role.OWNER.value
    ]


async def _page(request: Request, ctx: ConsoleContext, **extra: Any) -> Response:
    access = await org_access(request, ctx, Permission.ORG_READ)
    org = await read(request, lambda s: org_service.get_org(s, access))
    members: list[membership_service.MemberView] = []
    if ctx.can(Permission.MEMBERS_READ):
        members = await read(request, lambda s: membership_service.list_members(s, access))
    values: dict[str, Any] = {
        "org": org,
        "members": members,
        "roles": _roles_for(ctx),
        "idle_choices": IDLE_CHOICES,
        "invite_error": None,
        "invite_values": {},
        "settings_error": None,
        "baa_error": None,
        "member_error": None,
        "Permission": Permission,
    }
    values.update(extra)
    errors = [v for k, v in values.items() if k.endswith("_error") and isinstance(v, FormError)]
    status = errors[0].status if errors else 200
    return render(request, "clinic/overview.html", values, status_code=status)


@router.get("/clinic")
async def clinic(ctx: SignedInPage, request: Request) -> Response:
    return await _page(request, ctx)


@router.post("/clinic/invitations")
async def invite(ctx: SignedInPage, request: Request) -> Response:
    form = await read_form(request)
    values = {"email": form.get("email", "").strip(), "role": form.get("role", "")}
    body = parse(InvitationIn, values)
    access = await org_access(request, ctx, Permission.MEMBERS_INVITE)

    async def work(session: AsyncSession, body: InvitationIn) -> None:
        await invitation_service.invite(
            session, get_runtime(request), access, email=str(body.email), role=body.role
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return await _page(request, ctx, invite_error=FormError.of(outcome), invite_values=values)
    return redirect(request, "/clinic#members", flash="invitation_sent")


@router.post("/clinic/members/{user_id}")
async def update_member(user_id: str, ctx: SignedInPage, request: Request) -> Response:
    """Change a role, or (de)activate. With htmx, answers the member's table row."""
    form = await read_form(request)
    values: dict[str, Any] = {}
    if form.get("role"):
        values["role"] = form["role"]
    if form.get("active") in ("true", "false"):
        values["active"] = form["active"] == "true"
    body = parse(MemberPatchIn, values)
    access = await org_access(request, ctx, Permission.MEMBERS_UPDATE)

    async def work(session: AsyncSession, body: MemberPatchIn) -> membership_service.MemberView:
        return await membership_service.update_member(
            session, get_runtime(request), access, user_id, role=body.role, active=body.active
        )

    outcome = await attempt_parsed(request, body, work)
    htmx = bool(request.headers.get("hx-request"))
    if isinstance(outcome, AppError):
        if htmx:
            members = await read(request, lambda s: membership_service.list_members(s, access))
            member = next((m for m in members if m.user_id == user_id), None)
            if member is None:
                raise outcome
            return render(
                request,
                "clinic/_member_row.html",
                {"m": member, "roles": _roles_for(ctx), "row_error": FormError.of(outcome)},
                status_code=200,  # htmx swaps 2xx only: the row carries the error
            )
        return await _page(request, ctx, member_error=FormError.of(outcome))
    if htmx:
        return render(
            request,
            "clinic/_member_row.html",
            {"m": outcome, "roles": _roles_for(ctx), "row_error": None, "saved": True},
        )
    return redirect(request, "/clinic#members", flash="member_updated")


@router.post("/clinic/settings")
async def update_settings(ctx: SignedInPage, request: Request) -> Response:
    form = await read_form(request)
    values: dict[str, Any] = {
        "name": form.get("name", "").strip() or None,
        "require_mfa": form.get("require_mfa") == "on",
    }
    if form.get("idle_timeout_minutes"):
        values["idle_timeout_minutes"] = form["idle_timeout_minutes"]
    body = parse(OrgPatchIn, values)
    access = await org_access(request, ctx, Permission.ORG_UPDATE)

    async def work(session: AsyncSession, body: OrgPatchIn) -> None:
        await org_service.update_org(
            session,
            get_runtime(request),
            access,
            name=body.name,
            require_mfa=body.require_mfa,
            idle_timeout_minutes=body.idle_timeout_minutes,
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return await _page(request, ctx, settings_error=FormError.of(outcome))
    return redirect(request, "/clinic#settings", flash="settings_saved")


@router.post("/clinic/baa")
async def record_baa(ctx: SignedInPage, request: Request) -> Response:
    form = await read_form(request)
    body = parse(BaaIn, {"version": form.get("version", "").strip()})
    access = await org_access(request, ctx, Permission.BAA_SIGN)

    async def work(session: AsyncSession, body: BaaIn) -> None:
        await org_service.record_baa(session, access, body.version)

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return await _page(request, ctx, baa_error=FormError.of(outcome))
    return redirect(request, "/clinic#baa", flash="baa_recorded")
