"""The README documents every AAYU_* variable, exactly as the code declares them."""

from __future__ import annotations

from pathlib import Path

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
