"""``aayu-accounts demo init``: demo data for ``make run``, created once.

The first run creates a demo clinic with its owner and a platform administrator, with
generated passwords printed this once (nothing stores them in plaintext). Later runs see the
data exists and print nothing secret.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import typer

from aayu_accounts.audit.service import Actor
from aayu_accounts.cli.common import run_with_db, settings
from aayu_accounts.crypto.keyring.runtime import start_keyring
from aayu_accounts.db import Database
from aayu_accounts.identity.password import PasswordHasher, PasswordPolicy
from aayu_accounts.identity.user import service as user_service

app = typer.Typer(help="Demo data for local runs.", no_args_is_help=True)

DEMO_CLINIC = "Aayu Demo Clinic"
DEMO_OWNER = "owner@demo.aayuwell.com"
DEMO_ADMIN = "admin@demo.aayuwell.com"


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str
    what: str


def _generated_password() -> str:
    # 144 random bits: passes the policy (length, strength) with room to spare.
    return secrets.token_urlsafe(18)


@app.command()
def init() -> None:
    """Create the demo clinic, its owner and a platform administrator (first run only)."""
    current = settings()
    actor = Actor.system("cli:demo")

    async def work(db: Database) -> list[Credentials]:
        keys = await start_keyring(current, db, refresh=False)
        hasher = PasswordHasher.from_settings(current)
        policy = PasswordPolicy.from_settings(current)
        try:
            async with db.session_scope() as session:
                if await user_service.exists(session, DEMO_OWNER):
                    return []
                owner_password, admin_password = _generated_password(), _generated_password()
                owner = await user_service.create_verified_user(
                    session,
                    settings=current,
                    hasher=hasher,
                    policy=policy,
                    email=DEMO_OWNER,
                    password=owner_password,
                    full_name="Demo Owner",
                    platform_admin=False,
                    actor=actor,
                )
                await user_service.create_clinic_for(session, owner, DEMO_CLINIC, actor=actor)
                created = [Credentials(DEMO_OWNER, owner_password, f"owner of {DEMO_CLINIC}")]
                if not await user_service.exists(session, DEMO_ADMIN):
                    await user_service.create_verified_user(
                        session,
                        settings=current,
                        hasher=hasher,
                        policy=policy,
                        email=DEMO_ADMIN,
                        password=admin_password,
                        full_name="Demo Administrator",
                        platform_admin=True,
                        actor=actor,
                    )
                    created.append(
                        Credentials(DEMO_ADMIN, admin_password, "platform administrator")
                    )
                return created
        finally:
            hasher.close()
            await keys.stop()

    created = run_with_db(work)
    if not created:
        typer.echo(f"demo data exists ({DEMO_CLINIC}); passwords were shown on the first run")
        return
    typer.echo("Demo data created. These passwords are shown only this once:")
    for item in created:
        typer.echo(f"  {item.what}: {item.email}  password: {item.password}")
    typer.echo(f"Sign in to the console at {current.public_url}/sign-in")
