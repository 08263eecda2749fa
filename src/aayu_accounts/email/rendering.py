"""Plain-text templates: the first line is ``Subject: ...``, the rest is the body.

Plain text on purpose: no HTML means no remote images, no tracking pixels and no markup for a
phishing look-alike to copy; links stay visible as what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

_TEMPLATES = Path(__file__).resolve().parent / "templates"

# Plain text is not HTML: autoescape would corrupt "&" in links. StrictUndefined turns a
# missing variable into an error rather than an email with a hole in it.
_env = Environment(  # plain-text email: autoescape is off on purpose  # nosec B701
    loader=FileSystemLoader(_TEMPLATES),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701 - plain-text email, nothing is rendered as HTML
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body: str


def template_names() -> list[str]:
    return sorted(p.stem for p in _TEMPLATES.glob("*.txt"))


def render(template: str, context: dict[str, Any]) -> RenderedEmail:
    text = _env.get_template(f"{template}.txt").render(**context)
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {template!r} does not start with a Subject line")
    return RenderedEmail(subject=first.removeprefix("Subject: ").strip(), body=rest.lstrip("\n"))
