"""``aayu-accounts alerts export``: the alert rules for operators who run Prometheus."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from aayu_accounts.observability.alert import export

app = typer.Typer(help="Alert rules and routing.", no_args_is_help=True)

RULES_FILE = "aayu-accounts.rules.yml"
ALERTMANAGER_FILE = "alertmanager.example.yml"


class Part(StrEnum):
    ALL = "all"
    RULES = "rules"
    ALERTMANAGER = "alertmanager"


@app.command("export")
def export_rules(
    part: Annotated[Part, typer.Option(help="rules, alertmanager or all")] = Part.ALL,
    out_dir: Annotated[
        Path | None, typer.Option(help="Write the files here instead of stdout")
    ] = None,
    runbook_base: Annotated[
        str, typer.Option(help="Prefix of runbook links, e.g. https://git.example.org/aayu/")
    ] = "",
) -> None:
    """Print the Prometheus alerting rules and an Alertmanager routing example (YAML)."""
    documents: list[tuple[str, str]] = []
    if part in (Part.ALL, Part.RULES):
        documents.append((RULES_FILE, export.render(export.prometheus_rules(runbook_base))))
    if part in (Part.ALL, Part.ALERTMANAGER):
        documents.append((ALERTMANAGER_FILE, export.render(export.alertmanager_example())))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in documents:
            (out_dir / name).write_text(text)
            sys.stdout.write(f"{out_dir / name}\n")
        return
    sys.stdout.write(
        "\n---\n".join(f"# {name}\n{text}" for name, text in documents),
    )
