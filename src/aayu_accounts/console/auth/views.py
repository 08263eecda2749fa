"""Sign in (with the CAPTCHA and MFA steps), sign out, sign up, the email links (verify,
reset, accept an invitation) and the actions required at sign-in.

The email links' paths are API.md's: ``/verify-email?token=``, ``/reset-password?token=``,
``/accept-invitation?token=``. Opening a link changes nothing (mail scanners open links);
the page's button does.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.api_security.csrf import CsrfFailed
from aayu_accounts.console.forms import FormError, parse
from aayu_accounts.console.page import (
    Page,
    PendingPage,
    attempt,
    attempt_parsed,
    read_form,
    redirect,
    render,
    safe_next,
    set_org_cookie,
)
from aayu_accounts.crypto.field_encryption import normalize_email
from aayu_accounts.errors import AppError
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.auth_session.cookies import (
    SESSION_COOKIE,
    clear_session_cookies,
    set_session_cookies,
)
from aayu_accounts.identity.auth_session.service import IssuedSession, MfaStep
from aayu_accounts.identity.invitation import service as invitation_service
from aayu_accounts.identity.policy import service as policy_service
from aayu_accounts.identity.runtime import get_runtime
from aayu_accounts.identity.schemas import (
    AcceptInvitationIn,
    LoginIn,
    MfaIn,
    RegisterIn,
    ResetConfirmIn,
    ResetRequestIn,
    TokenIn,
)
from aayu_accounts.identity.tokens import hash_token
from aayu_accounts.identity.user import service as user_service
from aayu_accounts.kit.asgi import client_ip_var

router = APIRouter()


def _token_hash(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return hash_token(token) if token and len(token) <= 256 else None


def _signed_in(request: Request, issued: IssuedSession, next_path: str) -> Response:
    target = "/required-actions" if issued.required_actions else safe_next(next_path)
    response = redirect(request, target)
    set_session_cookies(response, get_runtime(request).settings, issued.token, issued.expires_at)
    return response


@router.get("/")
async def home(ctx: Page, request: Request) -> Response:
    if not ctx.signed_in:
        return redirect(request, "/sign-in")
    return redirect(request, "/required-actions" if ctx.pending_actions else "/account")


# --- sign in -----------------------------------------------------------------------------


def _sign_in_page(
    request: Request,
    *,
    email: str = "",
    next_path: str = "/",
    error: FormError | None = None,
    captcha: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "auth/sign_in.html",
        {
            "email": email,
            "next": next_path,
            "error": error,
            "captcha_json": json.dumps(captcha) if captcha else None,
            "idle": request.query_params.get("idle") == "1",
        },
        status_code=status_code,
    )


@router.get("/sign-in")
async def sign_in_form(ctx: Page, request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if ctx.signed_in and request.query_params.get("idle") != "1":
        return redirect(request, next_path)
    return _sign_in_page(request, next_path=next_path)


@router.post("/sign-in")
async def sign_in(ctx: Page, request: Request) -> Response:
    form = await read_form(request)
    next_path = safe_next(form.get("next"))
    email = form.get("email", "").strip()
    # The ALTCHA widget posts its payload in a field named "captcha".
    values = {"email": email, "password": form.get("password", "")}
    if form.get("captcha"):
        values["captcha"] = form["captcha"]
    body = parse(LoginIn, values)
    if isinstance(body, AppError):
        return _sign_in_page(
            request, email=email, next_path=next_path, error=FormError.of(body), status_code=422
        )

    async def work(session: AsyncSession) -> session_service.LoginOutcome:
        return await session_service.login(
            session,
            get_runtime(request),
            email=str(body.email),
            password=body.password,
            captcha=body.captcha,
            presented_token_hash=_token_hash(request),
            rollout=getattr(request.app.state, "rollout", None),
        )

    # Failures come back as values, so their audit rows and counters are committed.
    outcome = await attempt(request, work)
    if isinstance(outcome, AppError):
        captcha = outcome.extra.get("captcha") if outcome.code == "captcha_required" else None
        if outcome.code == "invalid_credentials":
            captcha = await _captcha_for_next_attempt(request, email)
        return _sign_in_page(
            request,
            email=email,
            next_path=next_path,
            error=FormError.of(outcome),
            captcha=captcha,
            status_code=outcome.status,
        )
    if isinstance(outcome, MfaStep):
        return render(
            request,
            "auth/mfa.html",
            {"mfa_token": outcome.mfa_token, "next": next_path, "error": None},
        )
    return _signed_in(request, outcome, next_path)


async def _captcha_for_next_attempt(request: Request, email: str) -> dict[str, Any] | None:
    """After a failure, the widget at once if the next attempt will need it (the throttle is
    read, not counted), so nobody types the password twice to learn it."""
    runtime = get_runtime(request)
    decision = await runtime.login_throttle.check(
        client_ip_var.get() or "unknown", normalize_email(email)
    )
    if decision.captcha_required and decision.retry_after is None:
        challenge: dict[str, Any] = runtime.captcha.challenge()
        return challenge
    return None


@router.post("/sign-in/mfa")
async def sign_in_mfa(ctx: Page, request: Request) -> Response:
    form = await read_form(request)
    next_path = safe_next(form.get("next"))
    mfa_token = form.get("mfa_token", "")
    body = parse(MfaIn, {"mfa_token": mfa_token, "code": form.get("code", "").strip()})

    async def work(session: AsyncSession, body: MfaIn) -> IssuedSession | AppError:
        return await session_service.complete_mfa(
            session,
            get_runtime(request),
            mfa_token=body.mfa_token,
            code=body.code,
            presented_token_hash=_token_hash(request),
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        if outcome.code == "too_many_attempts" or not mfa_token:
            return _sign_in_page(
                request, next_path=next_path, error=FormError.of(outcome), status_code=429
            )
        return render(
            request,
            "auth/mfa.html",
            {"mfa_token": mfa_token, "next": next_path, "error": FormError.of(outcome)},
            status_code=outcome.status,
        )
    return _signed_in(request, outcome, next_path)


@router.post("/sign-out")
async def sign_out(ctx: Page, request: Request) -> Response:
    try:
        form = await read_form(request)
    except CsrfFailed:
        if ctx.signed_in:
            raise
        # The session ended already (idle timeout): nothing to revoke, only cookies to clear.
        form = {"idle": "1"}
    token_hash = _token_hash(request) if ctx.signed_in else None
    runtime = get_runtime(request)
    if token_hash is not None:

        async def work(session: AsyncSession) -> None:
            await session_service.logout(session, runtime, token_hash)

        await attempt(request, work)
    idle = form.get("idle") == "1"  # the page's idle timer signed out
    response = redirect(request, "/sign-in", flash="idle_signed_out" if idle else "signed_out")
    clear_session_cookies(response, runtime.settings)
    return response


@router.get("/session/ping")
async def session_ping(ctx: PendingPage) -> JSONResponse:
    """ "Stay signed in": any authenticated request counts as activity; this one is cheap."""
    return JSONResponse({"ok": True, "idle_timeout_seconds": ctx.idle_timeout_seconds})


@router.get("/switch-org")
async def switch_org(ctx: PendingPage, request: Request) -> Response:
    """Remember which clinic the pages show (a display preference; membership is checked on
    every page)."""
    org_id = request.query_params.get("org_id", "")
    response = redirect(request, "/clinic")
    if any(m.org_id == org_id for m in ctx.memberships):
        set_org_cookie(request, response, org_id)
    return response


# --- sign up and the email links ---------------------------------------------------------


@router.get("/sign-up")
async def sign_up_form(ctx: Page, request: Request) -> Response:
    return render(request, "auth/sign_up.html", {"values": {}, "error": None})


@router.post("/sign-up")
async def sign_up(ctx: Page, request: Request) -> Response:
    form = await read_form(request)
    values = {
        "email": form.get("email", "").strip(),
        "password": form.get("password", ""),
        "full_name": form.get("full_name", "").strip(),
        "organization_name": form.get("organization_name", "").strip(),
    }
    body = parse(RegisterIn, values)

    async def work(session: AsyncSession, body: RegisterIn) -> None:
        await user_service.register(
            session,
            get_runtime(request),
            email=str(body.email),
            password=body.password,
            full_name=body.full_name,
            organization_name=body.organization_name,
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        values.pop("password")
        return render(
            request,
            "auth/sign_up.html",
            {"values": values, "error": FormError.of(outcome)},
            status_code=outcome.status,
        )
    return redirect(request, "/sign-in", flash="verification_sent")


def _link_page(request: Request, template: str, **values: str) -> Response:
    """An email link's page: the form carrying the link's token (opening it changes nothing)."""
    token = request.query_params.get("token", "")
    return render(request, template, {"token": token, **values, "error": None})


@router.get("/verify-email")
async def verify_email_form(ctx: Page, request: Request) -> Response:
    return _link_page(request, "auth/verify_email.html")


@router.post("/verify-email")
async def verify_email(ctx: Page, request: Request) -> Response:
    form = await read_form(request)
    body = parse(TokenIn, {"token": form.get("token", "")})

    async def work(session: AsyncSession, body: TokenIn) -> None:
        await user_service.verify_email(session, get_runtime(request), body.token)

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return render(
            request,
            "auth/verify_email.html",
            {"token": "", "error": FormError.of(outcome)},
            status_code=outcome.status,
        )
    return redirect(request, "/sign-in", flash="email_verified")


@router.get("/reset-password/request")
async def reset_request_form(ctx: Page, request: Request) -> Response:
    return render(request, "auth/reset_request.html", {"email": "", "error": None})


@router.post("/reset-password/request")
async def reset_request(ctx: Page, request: Request) -> Response:
    form = await read_form(request)
    email = form.get("email", "").strip()
    body = parse(ResetRequestIn, {"email": email})

    async def work(session: AsyncSession, body: ResetRequestIn) -> None:
        await user_service.request_password_reset(session, get_runtime(request), str(body.email))

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return render(
            request,
            "auth/reset_request.html",
            {"email": email, "error": FormError.of(outcome)},
            status_code=outcome.status,
        )
    return redirect(request, "/sign-in", flash="reset_requested")


@router.get("/reset-password")
async def reset_form(ctx: Page, request: Request) -> Response:
    return _link_page(request, "auth/reset_password.html")


@router.post("/reset-password")
async def reset_password(ctx: Page, request: Request) -> Response:
    form = await read_form(request)
    token = form.get("token", "")
    body = parse(ResetConfirmIn, {"token": token, "new_password": form.get("new_password", "")})

    async def work(session: AsyncSession, body: ResetConfirmIn) -> None:
        await user_service.confirm_password_reset(
            session, get_runtime(request), token=body.token, new_password=body.new_password
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return render(
            request,
            "auth/reset_password.html",
            {"token": token, "error": FormError.of(outcome)},
            status_code=outcome.status,
        )
    response = redirect(request, "/sign-in", flash="password_reset")
    # Every session of the user ended, this browser's included.
    clear_session_cookies(response, get_runtime(request).settings)
    return response


@router.get("/accept-invitation")
async def accept_invitation_form(ctx: Page, request: Request) -> Response:
    return _link_page(request, "auth/accept_invitation.html", full_name="")


@router.post("/accept-invitation")
async def accept_invitation(ctx: Page, request: Request) -> Response:
    form = await read_form(request)
    token = form.get("token", "")
    values: dict[str, Any] = {"token": token}
    if not ctx.signed_in:
        values["full_name"] = form.get("full_name", "").strip() or None
        values["password"] = form.get("password", "") or None
    body = parse(AcceptInvitationIn, values)

    async def work(session: AsyncSession, body: AcceptInvitationIn) -> invitation_service.Accepted:
        return await invitation_service.accept(
            session,
            get_runtime(request),
            token=body.token,
            signed_in_user_id=ctx.principal.user_id if ctx.principal is not None else None,
            full_name=body.full_name,
            password=body.password,
            current_token_hash=ctx.principal.token_hash if ctx.principal is not None else None,
        )

    outcome = await attempt_parsed(request, body, work)
    if isinstance(outcome, AppError):
        return render(
            request,
            "auth/accept_invitation.html",
            {
                "token": token,
                "full_name": values.get("full_name") or "",
                "error": FormError.of(outcome),
            },
            status_code=outcome.status,
        )
    if outcome.session is not None:
        # Joining a clinic rotated this browser's session token (a privilege change).
        issued = outcome.session
        response = redirect(request, "/clinic", flash="invitation_accepted")
        set_session_cookies(
            response, get_runtime(request).settings, issued.token, issued.expires_at
        )
        set_org_cookie(request, response, outcome.org_id)
        return response
    response = redirect(request, "/sign-in?next=/clinic", flash="invitation_accepted")
    set_org_cookie(request, response, outcome.org_id)
    return response


# --- actions required at sign-in ---------------------------------------------------------


@router.get("/required-actions")
async def required_actions(ctx: PendingPage, request: Request) -> Response:
    if not ctx.pending_actions:
        return redirect(request, "/account")
    runtime = get_runtime(request)
    return render(
        request,
        "auth/required_actions.html",
        {
            "terms_version": runtime.settings.terms_version,
            "privacy_version": runtime.settings.privacy_version,
            "error": None,
        },
    )


@router.post("/required-actions/policies")
async def accept_policies(ctx: PendingPage, request: Request) -> Response:
    form = await read_form(request)
    runtime = get_runtime(request)

    async def work(session: AsyncSession) -> None:
        await policy_service.accept(
            session,
            runtime,
            ctx.user_id,
            terms_version=form.get("terms_version", ""),
            privacy_version=form.get("privacy_version", ""),
        )

    if form.get("agree") != "yes":
        outcome: AppError | None = AppError("Tick the box to accept the terms and the policy.")
    else:
        outcome = await attempt(request, work)
    if isinstance(outcome, AppError):
        return render(
            request,
            "auth/required_actions.html",
            {
                "terms_version": runtime.settings.terms_version,
                "privacy_version": runtime.settings.privacy_version,
                "error": FormError.of(outcome),
            },
            status_code=outcome.status,
        )
    return redirect(request, "/required-actions", flash="policies_accepted")
