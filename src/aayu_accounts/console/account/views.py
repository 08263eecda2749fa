"""Account: profile, password, two-factor authentication (enroll with a QR code, confirm,
recovery codes shown once, turn off), active sessions, accepted policies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.console.forms import FormError, parse
from aayu_accounts.console.page import (
    PendingPage,
    SignedInPage,
    attempt,
    attempt_parsed,
    read,
    read_form,
    redirect,
    render,
    use_session_token,
)
from aayu_accounts.errors import AppError
from aayu_accounts.identity import mfa
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.auth_session.cookies import set_session_cookies
from aayu_accounts.identity.auth_session.service import IssuedSession
from aayu_accounts.identity.policy import service as policy_service
from aayu_accounts.identity.runtime import get_runtime
from aayu_accounts.identity.schemas import PasswordChangeIn, TotpCodeIn
from aayu_accounts.identity.user import mfa_service
from aayu_accounts.identity.user import service as user_service
from aayu_accounts.kit import clock

router = APIRouter()


@dataclass(frozen=True)
class SessionRow:
    id: str
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    user_agent: str | None


async def _overview(request: Request, ctx: SignedInPage, **extra: object) -> Response:
    assert ctx.principal is not None
    runtime = get_runtime(request)
    user_id, current = ctx.principal.user_id, ctx.principal.session_id

    async def live_sessions(session: AsyncSession) -> list[SessionRow]:
        return [
            SessionRow(s.id, s.created_at, s.last_seen_at, s.ip, s.user_agent)
            for s in await session_service.list_sessions(session, user_id)
        ]

    sessions = await read(request, live_sessions)
    policies = await read(request, lambda s: policy_service.status(s, runtime, user_id))
    values: dict[str, object] = {
        "sessions": sorted(sessions, key=lambda s: s.id != current),
        "current_session_id": current,
        "policies": policies,
        "now": clock.now(),
        "password_error": None,
        "mfa_error": None,
    }
    values.update(extra)
    status = 200
    for key in ("password_error", "mfa_error"):
        error = values.get(key)
        if isinstance(error, FormError):
            status = error.status
    return render(request, "account/overview.html", values, status_code=status)


@router.get("/account")
async def account(ctx: SignedInPage, request: Request) -> Response:
    return await _overview(request, ctx)


@router.post("/account/password")
async def change_password(ctx: SignedInPage, request: Request) -> Response:
    form = await read_form(request)
    body = parse(
        PasswordChangeIn,
        {
            "current_password": form.get("current_password", ""),
            "new_password": form.get("new_password", ""),
        },
    )

    async def work(session: AsyncSession, body: PasswordChangeIn) -> None:
        assert ctx.principal is not None
        await user_service.change_password(
            session,
            get_runtime(request),
            user_id=ctx.principal.user_id,
            current_session_id=ctx.principal.session_id,
            current_password=body.current_password,
            new_password=body.new_password,
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return await _overview(request, ctx, password_error=FormError.of(outcome))
    return redirect(request, "/account", flash="password_changed")


# --- two-factor authentication -------------------------------------------------------------


def _enrollment_page(
    request: Request, ctx: PendingPage, secret: str, error: FormError | None = None
) -> Response:
    uri = mfa.provisioning_uri(secret, ctx.email or ctx.user_id, issuer=mfa_service.ISSUER)
    return render(
        request,
        "account/mfa_enroll.html",
        {"secret": secret, "otpauth_uri": uri, "qr_svg": mfa.qr_svg(uri), "error": error},
        status_code=400 if error else 200,
    )


@router.get("/account/mfa")
async def mfa_page(ctx: PendingPage, request: Request) -> Response:
    """Allowed with actions pending: enrolling is how a required enrollment is completed."""
    return render(request, "account/mfa.html", {"error": None})


@router.post("/account/mfa/start")
async def mfa_start(ctx: PendingPage, request: Request) -> Response:
    await read_form(request)
    outcome = await attempt(request, lambda s: mfa_service.start_enrollment(s, ctx.user_id))
    if isinstance(outcome, AppError):
        return render(
            request, "account/mfa.html", {"error": FormError.of(outcome)}, status_code=400
        )
    return _enrollment_page(request, ctx, outcome.secret)


@router.post("/account/mfa/confirm")
async def mfa_confirm(ctx: PendingPage, request: Request) -> Response:
    form = await read_form(request)
    secret = form.get("secret", "")
    body = parse(TotpCodeIn, {"code": form.get("code", "").strip()})
    runtime = get_runtime(request)

    async def work(session: AsyncSession, body: TotpCodeIn) -> tuple[list[str], IssuedSession]:
        assert ctx.principal is not None
        return await mfa_service.confirm_enrollment(
            session,
            runtime,
            ctx.principal.user_id,
            body.code,
            throttle_key=ctx.principal.session_id,
            current_token_hash=ctx.principal.token_hash,
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        if secret and outcome.code not in ("mfa_not_enrolling", "mfa_already_enabled"):
            return _enrollment_page(request, ctx, secret, FormError.of(outcome))
        return render(
            request, "account/mfa.html", {"error": FormError.of(outcome)}, status_code=400
        )
    codes, issued = outcome
    # The session token rotated: this page's forms must carry the new session's CSRF token.
    use_session_token(request, issued.token)
    response = render(
        request,
        "account/recovery_codes.html",
        {
            "codes": codes,
            "continue_to": "/required-actions" if issued.required_actions else "/account",
        },
    )
    set_session_cookies(response, runtime.settings, issued.token, issued.expires_at)
    return response


@router.post("/account/mfa/disable")
async def mfa_disable(ctx: SignedInPage, request: Request) -> Response:
    form = await read_form(request)
    body = parse(TotpCodeIn, {"code": form.get("code", "").strip()})

    async def work(session: AsyncSession, body: TotpCodeIn) -> None:
        assert ctx.principal is not None
        await mfa_service.disable(
            session,
            get_runtime(request),
            ctx.principal.user_id,
            body.code,
            throttle_key=ctx.principal.session_id,
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return await _overview(request, ctx, mfa_error=FormError.of(outcome))
    return redirect(request, "/account", flash="mfa_disabled")


# --- sessions ------------------------------------------------------------------------------


@router.post("/account/sessions/{session_id}/revoke")
async def revoke_session(session_id: str, ctx: SignedInPage, request: Request) -> Response:
    await read_form(request)
    assert ctx.principal is not None
    runtime = get_runtime(request)
    outcome = await attempt(
        request,
        lambda s: session_service.revoke_own_session(
            s, runtime, user_id=ctx.user_id, session_id=session_id
        ),
    )
    if isinstance(outcome, AppError):
        raise outcome
    if session_id == ctx.principal.session_id:
        return redirect(request, "/sign-in", flash="signed_out")
    return redirect(request, "/account#sessions", flash="session_revoked")


@router.post("/account/sessions/revoke-others")
async def revoke_other_sessions(ctx: SignedInPage, request: Request) -> Response:
    await read_form(request)
    assert ctx.principal is not None
    runtime = get_runtime(request)
    current = ctx.principal.session_id

    async def work(session: AsyncSession) -> None:
        # One audited revocation per session, through the same service as the API's DELETE.
        for other in await session_service.list_sessions(session, ctx.user_id):
            if other.id != current:
                await session_service.revoke_own_session(
                    session, runtime, user_id=ctx.user_id, session_id=other.id
                )

    outcome = await attempt(request, work)
    if isinstance(outcome, AppError):
        raise outcome
    return redirect(request, "/account#sessions", flash="sessions_revoked")
