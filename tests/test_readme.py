"""The README documents every AAYU_* variable, exactly as the code declares them."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from pydantic_settings import BaseSettings

from aayu_accounts.cli.config_cli import SETTINGS_CLASSES, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_matches_the_code() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end] == settings_table(), "run `aayu-accounts config docs` into README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    for settings_class in SETTINGS_CLASSES:
        for name in settings_class.model_fields:
            assert f"`AAYU_{name.upper()}`" in text


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text()[:1500]
    assert "make run" in head
    assert "make test" in head


def test_readme_order_is_commands_then_configuration_then_pointers() -> None:
    text = README.read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    order = ["## The two commands", "## Configuration", "## Where to read on"]
    assert [h for h in headings if h in order] == order
    pointers = text[text.index("## Where to read on") :]
    for doc in ("docs/architecture.md", "docs/runbook.md"):
        assert doc in pointers
        assert (ROOT / doc).is_file()


ROOT = README.parent
# Written where an operator or a developer reads them from the environment.
_VARIABLE = re.compile(r"\bAAYU_[A-Z][A-Z0-9_]*[A-Z0-9]\b(?![_<{])")


def _variables_read_anywhere() -> set[str]:
    sources = [ROOT / "Makefile", ROOT / ".ci" / "run"]
    for folder in ("src", "tests", "bench", "migrations"):
        sources.extend((ROOT / folder).rglob("*.py"))
    found: set[str] = set()
    for source in sources:
        found.update(_VARIABLE.findall(source.read_text()))
    return found


def test_every_aayu_variable_used_anywhere_is_in_the_readme() -> None:
    text = README.read_text()
    variables = _variables_read_anywhere()
    assert {"AAYU_DATABASE_URL", "AAYU_REQUIRE_SERVICES", "AAYU_TEST_DATABASE_URL"} <= variables
    # AAYU_SECRET_<NAME> is one documented family (the `env` secret provider's variables).
    undocumented = sorted(
        name
        for name in variables
        if f"`{name}`" not in text
        and f"`{name}=" not in text
        and not (name.startswith("AAYU_SECRET_") and "`AAYU_SECRET_<NAME>`" in text)
    )
    assert undocumented == [], f"README.md does not document {undocumented}"


def test_every_settings_class_of_the_package_is_documented() -> None:
    # A settings class the table generator does not know would leave its variables out.
    package = importlib.import_module("aayu_accounts")
    for module in pkgutil.walk_packages(package.__path__, "aayu_accounts."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)

    def subclasses(cls: type[BaseSettings]) -> set[type[BaseSettings]]:
        direct = set(cls.__subclasses__())
        return direct.union(*(subclasses(sub) for sub in direct))

    ours = {cls for cls in subclasses(BaseSettings) if cls.__module__.startswith("aayu_accounts")}
    assert ours == set(SETTINGS_CLASSES)
