"""The email telling a user their sign-in credentials changed (password, MFA).

Every such notice carries the time and the reset link, so an owner who did not make the
change can take the account back.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from aayu_accounts.email.service import queue_email
from aayu_accounts.identity.runtime import IdentityRuntime
from aayu_accounts.kit import clock
from aayu_accounts.models.user import User


async def notify_credentials_changed(
    session: AsyncSession, rt: IdentityRuntime, user: User, template: str, **details: str
) -> None:
    """Queue ``template`` for ``user``; ``details`` name the change for the template."""
    await queue_email(
        session,
        to=user.email or "",
        template=template,
        context={
            "full_name": user.full_name,
            **details,
            "when": clock.now().strftime("%Y-%m-%d %H:%M"),
            "reset_url": f"{rt.settings.public_url}/reset-password",
        },
    )
