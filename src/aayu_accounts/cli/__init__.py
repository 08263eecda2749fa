"""``aayu-accounts``: the operator's command line. Commands are thin and call services.

Every command reads the same ``AAYU_*`` environment as the server. A failure exits non-zero
with a one-line reason on stderr; commands that print records take ``--json``.
"""

from __future__ import annotations

import sys

import typer

from aayu_accounts.cli import (
    admin_cli,
    alerts_cli,
    audit_cli,
    billing_cli,
    clients_cli,
    config_cli,
    db_cli,
    demo_cli,
    keys_cli,
    serve_cli,
)
from aayu_accounts.cli.backup_cli import app as backup_app
from aayu_accounts.cli.backup_cli import cache_app
from aayu_accounts.cli.flags_cli import app as flags_app
from aayu_accounts.cli.migrate_cli import app as migrate_app
from aayu_accounts.cli.rollback_cli import register as register_rollback
from aayu_accounts.cli.shadow_cli import app as shadow_app
from aayu_accounts.config import InsecureConfiguration

app = typer.Typer(
    name="aayu-accounts",
    help="Aayu Accounts: identity, billing and safe rollout.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_cli.app, name="db")
app.add_typer(config_cli.app, name="config")
app.add_typer(alerts_cli.app, name="alerts")
app.add_typer(keys_cli.app, name="keys")
serve_cli.register(app)
app.add_typer(flags_app, name="flags")
register_rollback(app)
app.add_typer(shadow_app, name="shadow")
app.add_typer(migrate_app, name="migrate")
app.add_typer(backup_app, name="backup")
app.add_typer(cache_app, name="cache")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(clients_cli.app, name="clients")
app.add_typer(admin_cli.app, name="admin")
app.add_typer(demo_cli.app, name="demo")
app.add_typer(billing_cli.app, name="billing")


class CommandFailed(Exception):
    """Raised by commands for an expected failure; printed as one line, exit code 1."""


def main() -> None:
    try:
        app(standalone_mode=False)
    except (CommandFailed, InsecureConfiguration) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's output channel
        sys.exit(1)
    except typer.Abort:
        print("aborted", file=sys.stderr)  # noqa: T201
        sys.exit(1)
    except SystemExit:
        raise
    except Exception as exc:  # one line, never a traceback full of values
        print(f"error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)  # noqa: T201
        sys.exit(1)
