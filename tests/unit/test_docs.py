"""Docs stay true to the code: every error code and every setting is documented, and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

from dxapi.errors import CATALOGUE
from dxapi.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_error_code_is_documented_with_its_status() -> None:
    text = (DOCS / "errors.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| (\d{3}) \|", text, flags=re.MULTILINE))
    assert rows == {code: str(spec.status) for code, spec in CATALOGUE.items()}
    for code in CATALOGUE:
        assert f"- **{code}** — " in text, f"message template of {code} missing in docs/errors.md"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "settings.md").read_text()
    documented = set(re.findall(r"^\| `DXAPI_([A-Z_]+)` \|", text, flags=re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"


def test_error_codes_are_unique_strings_with_known_statuses() -> None:
    for code, spec in CATALOGUE.items():
        assert spec.code == code and code.isdigit()
        assert spec.status in {400, 401, 403, 404, 405, 406, 409, 410, 412, 413, 415, 422, 429, 500, 503, 504}
