"""HTTP routes of API.md's *Public*, *The signed-in user* and *Organizations* identity rows.

Thin: dependencies in, one service call, schema out. Sign-in failures come back from the
service as values and are rendered here without raising, so the edge still commits their
audit rows and counters (a raised error would roll them back).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from aayu_accounts.db import ReadSession, WriteSession, get_database
from aayu_accounts.errors import PROBLEM_CONTENT_TYPE, AppError, problem_response
from aayu_accounts.identity.auth_session import service as session_service
from aayu_accounts.identity.auth_session.cookies import (
    clear_session_cookies,
    set_session_cookies,
)
from aayu_accounts.identity.auth_session.service import IssuedSession
from aayu_accounts.identity.deps import (
    CurrentSession,
    OptionalSession,
    org_access,
    presented_token,
)
from aayu_accounts.identity.invitation import service as invitation_service
from aayu_accounts.identity.membership import service as membership_service
from aayu_accounts.identity.membership.service import OrgAccess
from aayu_accounts.identity.organization import service as org_service
from aayu_accounts.identity.organization.service import OrgView
from aayu_accounts.identity.permissions import Permission
from aayu_accounts.identity.policy import service as policy_service
from aayu_accounts.identity.policy.service import PolicyStatus
from aayu_accounts.identity.runtime import get_runtime
from aayu_accounts.identity.schemas import (
    AcceptInvitationIn,
    AcceptInvitationOut,
    BaaIn,
    BaaOut,
    CaptchaOut,
    DocumentStatusOut,
    InvitationIn,
    InvitationOut,
    LoginIn,
    LoginOut,
    MemberOut,
    MemberPatchIn,
    MembershipOut,
    MeOut,
    MfaIn,
    MfaStepOut,
    OrgOut,
    OrgPatchIn,
    PasswordChangeIn,
    PolicyAcceptIn,
    PolicyStatusOut,
    RecoveryCodesOut,
    RegisterIn,
    ResetConfirmIn,
    ResetRequestIn,
    SessionOut,
    StatusOut,
    TokenIn,
    TotpCodeIn,
    TotpEnrollmentOut,
)
from aayu_accounts.identity.tokens import hash_token
from aayu_accounts.identity.user import mfa_service
from aayu_accounts.identity.user import service as user_service


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    content = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {s: {"description": "Problem (RFC 9457)", "content": content} for s in statuses}


auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
me_router = APIRouter(prefix="/api/v1/me", tags=["me"])
orgs_router = APIRouter(prefix="/api/v1", tags=["organizations"])


def _presented_hash(request: Request) -> str | None:
    presented = presented_token(request)
    return hash_token(presented[0]) if presented else None


async def _me(session: Any, user_id: str, required_actions: tuple[str, ...]) -> MeOut:
    profile = await user_service.profile(session, user_id)
    return MeOut(
        id=profile.id,
        email=profile.email,
        full_name=profile.full_name,
        mfa_enabled=profile.mfa_enabled,
        memberships=[
            MembershipOut(org_id=m.org_id, org_name=m.org_name, role=m.role)
            for m in profile.memberships
        ],
        required_actions=list(required_actions),
    )


async def _signed_in(request: Request, session: Any, issued: IssuedSession) -> JSONResponse:
    # The new session's user and memberships were read to issue it: the answer reuses them.
    user = issued.user
    me = MeOut(
        id=user.id,
        email=user.email or "",
        full_name=user.full_name or "",
        mfa_enabled=user.mfa_enabled,
        memberships=[
            MembershipOut(org_id=o.id, org_name=o.name, role=m.role) for m, o in issued.memberships
        ],
        required_actions=list(issued.required_actions),
    )
    body = LoginOut(
        token=issued.token,
        expires_at=issued.expires_at,
        user=me,
        required_actions=list(issued.required_actions),
    )
    response = JSONResponse(body.model_dump(mode="json"))
    set_session_cookies(response, get_runtime(request).settings, issued.token, issued.expires_at)
    return response


def _session_replaced(
    request: Request, body: BaseModel, issued: IssuedSession | None
) -> JSONResponse:
    """An answer after a privilege change in the caller's session: ``body`` carries the new
    token (for Bearer callers) and the cookie is replaced (for browsers)."""
    response = JSONResponse(body.model_dump(mode="json"))
    if issued is not None:
        set_session_cookies(
            response, get_runtime(request).settings, issued.token, issued.expires_at
        )
    return response


# --- public: sign-up, sign-in, recovery ----------------------------------------------------


@auth_router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StatusOut,
    responses=_problems(422),
)
async def register(body: RegisterIn, request: Request, session: WriteSession) -> StatusOut:
    """Create an account and its clinic; the same 202 whether or not the email is taken."""
    await user_service.register(
        session,
        get_runtime(request),
        email=str(body.email),
        password=body.password,
        full_name=body.full_name,
        organization_name=body.organization_name,
    )
    return StatusOut(status="verification_sent")


@auth_router.post("/verify-email", response_model=StatusOut, responses=_problems(400, 422))
async def verify_email(body: TokenIn, request: Request, session: WriteSession) -> StatusOut:
    await user_service.verify_email(session, get_runtime(request), body.token)
    return StatusOut(status="verified")


@auth_router.post(
    "/login",
    response_model=LoginOut | MfaStepOut,
    responses=_problems(401, 422, 429),
)
async def login(body: LoginIn, request: Request, session: WriteSession) -> JSONResponse:
    """Sign in; answers either a session (token + cookie) or the MFA step (``mfa_token``)."""
    outcome = await session_service.login(
        session,
        get_runtime(request),
        email=str(body.email),
        password=body.password,
        captcha=body.captcha,
        presented_token_hash=_presented_hash(request),
        # v2.5 users are routed by NEW_AUTH between their old credentials and this store.
        rollout=getattr(request.app.state, "rollout", None),
    )
    if isinstance(outcome, AppError):
        return problem_response(outcome, request)
    if isinstance(outcome, session_service.MfaStep):
        step = MfaStepOut(mfa_token=outcome.mfa_token, expires_at=outcome.expires_at)
        return JSONResponse(step.model_dump(mode="json"))
    return await _signed_in(request, session, outcome)


@auth_router.post("/mfa", response_model=LoginOut, responses=_problems(401, 422, 429))
async def login_mfa(body: MfaIn, request: Request, session: WriteSession) -> JSONResponse:
    """Second sign-in step: a TOTP code or a recovery code (each accepted once)."""
    outcome = await session_service.complete_mfa(
        session,
        get_runtime(request),
        mfa_token=body.mfa_token,
        code=body.code,
        presented_token_hash=_presented_hash(request),
    )
    if isinstance(outcome, AppError):
        return problem_response(outcome, request)
    return await _signed_in(request, session, outcome)


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, session: WriteSession) -> Response:
    token_hash = _presented_hash(request)
    runtime = get_runtime(request)
    if token_hash is not None:
        await session_service.logout(session, runtime, token_hash)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response, runtime.settings)
    return response


@auth_router.post(
    "/password-reset/request",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StatusOut,
    responses=_problems(422, 429),
)
async def password_reset_request(
    body: ResetRequestIn, request: Request, session: WriteSession
) -> StatusOut:
    """Always 202: whether the account exists is not revealed."""
    await user_service.request_password_reset(session, get_runtime(request), str(body.email))
    return StatusOut(status="reset_requested")


@auth_router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_problems(400, 422),
)
async def password_reset_confirm(
    body: ResetConfirmIn, request: Request, session: WriteSession
) -> Response:
    """Set a new password with the emailed token; every session of the user ends."""
    await user_service.confirm_password_reset(
        session, get_runtime(request), token=body.token, new_password=body.new_password
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth_router.get("/captcha", response_model=CaptchaOut)
async def captcha(request: Request) -> JSONResponse:
    """A fresh challenge (ALTCHA: solve it, send base64 of the JSON solution as ``captcha``)."""
    return JSONResponse(get_runtime(request).captcha.challenge())


# --- the signed-in user ------------------------------------------------------------------


@me_router.get("", response_model=MeOut, responses=_problems(401))
async def me(principal: CurrentSession, request: Request) -> MeOut:
    # Served from the session cache when possible (no database session at all): the hot path
    # of every client's start-up.
    cached = get_runtime(request).sessions.get(principal.token_hash)
    if cached is not None and isinstance(cached.profile, MeOut):
        return cached.profile
    async with get_database(request).session_scope(write=False) as session:
        body = await _me(session, principal.user_id, principal.required_actions)
    if cached is not None:
        cached.profile = body
    return body


@me_router.post(
    "/password", status_code=status.HTTP_204_NO_CONTENT, responses=_problems(400, 401, 422)
)
async def change_password(
    body: PasswordChangeIn, principal: CurrentSession, request: Request, session: WriteSession
) -> Response:
    """Change the password; every other session of the user ends."""
    await user_service.change_password(
        session,
        get_runtime(request),
        user_id=principal.user_id,
        current_session_id=principal.session_id,
        current_password=body.current_password,
        new_password=body.new_password,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@me_router.get("/sessions", response_model=list[SessionOut], responses=_problems(401))
async def list_sessions(principal: CurrentSession, session: ReadSession) -> list[SessionOut]:
    return [
        SessionOut(
            id=s.id,
            created_at=s.created_at,
            last_seen_at=s.last_seen_at,
            expires_at=s.expires_at,
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.id == principal.session_id,
        )
        for s in await session_service.list_sessions(session, principal.user_id)
    ]


@me_router.delete(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_problems(401, 404)
)
async def revoke_session(
    session_id: str, principal: CurrentSession, request: Request, session: WriteSession
) -> Response:
    await session_service.revoke_own_session(
        session, get_runtime(request), user_id=principal.user_id, session_id=session_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@me_router.post("/mfa/totp", response_model=TotpEnrollmentOut, responses=_problems(401, 409))
async def start_totp(principal: CurrentSession, session: WriteSession) -> TotpEnrollmentOut:
    """Start TOTP enrollment: the secret, its ``otpauth://`` URI and a QR code (SVG)."""
    enrollment = await mfa_service.start_enrollment(session, principal.user_id)
    return TotpEnrollmentOut(
        secret=enrollment.secret, otpauth_uri=enrollment.otpauth_uri, qr_svg=enrollment.qr_svg
    )


@me_router.post(
    "/mfa/totp/confirm", response_model=RecoveryCodesOut, responses=_problems(400, 401, 409, 429)
)
async def confirm_totp(
    body: TotpCodeIn, principal: CurrentSession, request: Request, session: WriteSession
) -> JSONResponse:
    """Confirm with a code: MFA is on, the 10 recovery codes are shown once, and the session
    token is rotated (a privilege change; the user's other sessions end)."""
    codes, issued = await mfa_service.confirm_enrollment(
        session,
        get_runtime(request),
        principal.user_id,
        body.code,
        throttle_key=principal.session_id,
        current_token_hash=principal.token_hash,
    )
    return _session_replaced(
        request, RecoveryCodesOut(recovery_codes=codes, token=issued.token), issued
    )


@me_router.delete(
    "/mfa/totp", status_code=status.HTTP_204_NO_CONTENT, responses=_problems(400, 401, 403, 409)
)
async def disable_totp(
    body: TotpCodeIn, principal: CurrentSession, request: Request, session: WriteSession
) -> Response:
    """Turn TOTP off with a current code; refused where a clinic requires MFA."""
    await mfa_service.disable(
        session,
        get_runtime(request),
        principal.user_id,
        body.code,
        throttle_key=principal.session_id,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _policy_out(found: PolicyStatus) -> PolicyStatusOut:
    return PolicyStatusOut(
        terms=DocumentStatusOut(
            current_version=found.terms.current_version,
            accepted_version=found.terms.accepted_version,
            accepted_at=found.terms.accepted_at,
        ),
        privacy=DocumentStatusOut(
            current_version=found.privacy.current_version,
            accepted_version=found.privacy.accepted_version,
            accepted_at=found.privacy.accepted_at,
        ),
        acceptance_required=found.acceptance_required,
    )


@me_router.get("/policies", response_model=PolicyStatusOut, responses=_problems(401))
async def policies(
    principal: CurrentSession, request: Request, session: ReadSession
) -> PolicyStatusOut:
    """The current terms and privacy versions and which ones the caller accepted."""
    return _policy_out(
        await policy_service.status(session, get_runtime(request), principal.user_id)
    )


@me_router.post(
    "/policies/accept", response_model=PolicyStatusOut, responses=_problems(401, 409, 422)
)
async def accept_policies(
    body: PolicyAcceptIn, principal: CurrentSession, request: Request, session: WriteSession
) -> PolicyStatusOut:
    return _policy_out(
        await policy_service.accept(
            session,
            get_runtime(request),
            principal.user_id,
            terms_version=body.terms_version,
            privacy_version=body.privacy_version,
        )
    )


# --- organizations -----------------------------------------------------------------------

OrgReader = Annotated[OrgAccess, Depends(org_access(Permission.ORG_READ))]
OrgUpdater = Annotated[OrgAccess, Depends(org_access(Permission.ORG_UPDATE))]
MembersReader = Annotated[OrgAccess, Depends(org_access(Permission.MEMBERS_READ))]
MembersInviter = Annotated[OrgAccess, Depends(org_access(Permission.MEMBERS_INVITE))]
MembersUpdater = Annotated[OrgAccess, Depends(org_access(Permission.MEMBERS_UPDATE))]
BaaSigner = Annotated[OrgAccess, Depends(org_access(Permission.BAA_SIGN))]


def _org_out(view: OrgView) -> OrgOut:
    baa = None
    if view.baa_version is not None and view.baa_signed_at is not None:
        baa = BaaOut(
            version=view.baa_version, signed_at=view.baa_signed_at, signed_by=view.baa_signed_by
        )
    return OrgOut(
        id=view.id,
        name=view.name,
        require_mfa=view.require_mfa,
        created_at=view.created_at,
        idle_timeout_minutes=view.idle_timeout_minutes,
        baa=baa,
    )


@orgs_router.get("/orgs/{org_id}", response_model=OrgOut, responses=_problems(401, 403, 404))
async def get_org(access: OrgReader, session: ReadSession) -> OrgOut:
    return _org_out(await org_service.get_org(session, access))


@orgs_router.patch("/orgs/{org_id}", response_model=OrgOut, responses=_problems(401, 403, 404, 422))
async def update_org(
    body: OrgPatchIn, access: OrgUpdater, request: Request, session: WriteSession
) -> OrgOut:
    return _org_out(
        await org_service.update_org(
            session,
            get_runtime(request),
            access,
            name=body.name,
            require_mfa=body.require_mfa,
            idle_timeout_minutes=body.idle_timeout_minutes,
        )
    )


@orgs_router.post(
    "/orgs/{org_id}/baa", response_model=OrgOut, responses=_problems(401, 403, 404, 422)
)
async def record_baa(body: BaaIn, access: BaaSigner, session: WriteSession) -> OrgOut:
    """The owner records the signed Business Associate Agreement (version; who and when)."""
    return _org_out(await org_service.record_baa(session, access, body.version))


def _member_out(view: membership_service.MemberView) -> MemberOut:
    return MemberOut(
        user_id=view.user_id,
        email=view.email,
        full_name=view.full_name,
        role=view.role,
        active=view.active,
        mfa_enabled=view.mfa_enabled,
    )


@orgs_router.get(
    "/orgs/{org_id}/members", response_model=list[MemberOut], responses=_problems(401, 403, 404)
)
async def list_members(access: MembersReader, session: ReadSession) -> list[MemberOut]:
    return [_member_out(v) for v in await membership_service.list_members(session, access)]


@orgs_router.patch(
    "/orgs/{org_id}/members/{user_id}",
    response_model=MemberOut,
    responses=_problems(401, 403, 404, 409, 422),
)
async def update_member(
    user_id: str,
    body: MemberPatchIn,
    access: MembersUpdater,
    request: Request,
    session: WriteSession,
) -> MemberOut:
    """Change a role or (de)activate; deactivation ends every session of the member at once."""
    return _member_out(
        await membership_service.update_member(
            session, get_runtime(request), access, user_id, role=body.role, active=body.active
        )
    )


@orgs_router.post(
    "/orgs/{org_id}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationOut,
    responses=_problems(401, 403, 404, 409, 422),
)
async def invite(
    body: InvitationIn, access: MembersInviter, request: Request, session: WriteSession
) -> InvitationOut:
    view = await invitation_service.invite(
        session, get_runtime(request), access, email=str(body.email), role=body.role
    )
    return InvitationOut(id=view.id, email=view.email, role=view.role, expires_at=view.expires_at)


@orgs_router.post(
    "/invitations/accept",
    response_model=AcceptInvitationOut,
    responses=_problems(400, 403, 409, 422),
)
async def accept_invitation(
    body: AcceptInvitationIn,
    principal: OptionalSession,
    request: Request,
    session: WriteSession,
) -> JSONResponse:
    """New user: ``token, full_name, password``. Signed-in user: ``token`` alone; joining a
    clinic is a privilege change, so the caller's session token is rotated (the new one in
    ``token`` and the cookie) and the user's other sessions end."""
    accepted = await invitation_service.accept(
        session,
        get_runtime(request),
        token=body.token,
        signed_in_user_id=principal.user_id if principal is not None else None,
        full_name=body.full_name,
        password=body.password,
        current_token_hash=principal.token_hash if principal is not None else None,
    )
    out = AcceptInvitationOut(
        org_id=accepted.org_id,
        org_name=accepted.org_name,
        role=accepted.role,
        user_id=accepted.user_id,
        created_account=accepted.created_account,
        token=accepted.session.token if accepted.session is not None else None,
    )
    return _session_replaced(request, out, accepted.session)


routers = (auth_router, me_router, orgs_router)
