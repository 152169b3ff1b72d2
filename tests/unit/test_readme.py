"""The README's settings table is generated from the settings model; keep them equal."""

from __future__ import annotations

import re
from pathlib import Path

from engine.settings import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_settings_table_is_current():
    match = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", README.read_text(), re.S)
    assert match, "README.md lost its <!-- settings:begin/end --> markers"
    assert match.group(1).strip() == settings_table().strip(), (
        "README.md's settings table is out of date: run `make readme-settings`"
    )
