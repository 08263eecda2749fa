"""Jinja2 for the console: autoescaping always on, one base layout, one loader per area.

Template names: ``base.html`` and ``_*.html`` partials live in ``console/templates/``; an
area's templates live in ``console/<area>/templates/`` and are named ``<area>/<file>``
(``billing/overview.html`` is ``console/billing/templates/overview.html``). Areas are found
by their folder, so a new area needs no edit here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, StrictUndefined

CONSOLE_DIR = Path(__file__).resolve().parent
STATIC_DIR = CONSOLE_DIR / "static"


def _area_loaders() -> dict[str, FileSystemLoader]:
    return {
        child.name: FileSystemLoader(child / "templates")
        for child in sorted(CONSOLE_DIR.iterdir())
        if child.is_dir() and (child / "templates").is_dir() and child.name != "templates"
    }


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [FileSystemLoader(CONSOLE_DIR / "templates"), PrefixLoader(_area_loaders())]
        ),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_version"] = _static_version()
    return env


def _static_version() -> str:
    """A cache-busting suffix: the newest static file's modification time."""
    newest = max((p.stat().st_mtime for p in STATIC_DIR.rglob("*") if p.is_file()), default=0)
    return str(int(newest))
