"""Rewrite the generated tables of docs/errors.md and docs/settings.md from the code (``make docs``).

Only the tables are generated; the prose around them is kept. ``tests/unit/test_docs.py`` fails when the
pages and the code disagree, so run this after adding an error code or a setting.
"""

from __future__ import annotations

from pathlib import Path

from dxapi.errors import CATALOGUE
from dxapi.settings import Settings

DOCS = Path(__file__).resolve().parent


def errors_page(text: str) -> str:
    head, rest = text.split("| code | status | meaning |", 1)
    tail = rest[rest.index("## Divergences"):]
    lines = ["| code | status | meaning |", "|---|---|---|"]
    lines += [f"| {c} | {s.status} | {s.summary}{' *(retired)*' if s.retired else ''} |" for c, s in CATALOGUE.items()]
    lines += ["", "## Message templates", "",
              "Placeholders in braces are filled per error (`{path}` is the item path such as `products[3]`).", ""]
    for code, spec in CATALOGUE.items():
        template = spec.template.replace("{{", "{").replace("}}", "}")
        lines.append(f"- **{code}** — `` {template} ``")
    return head + "\n".join(lines) + "\n\n" + tail


def settings_page(text: str) -> str:
    start = text.index("|---|---|---|\n") + len("|---|---|---|\n")
    end = text.index("\n\nDatabase URLs")
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()  # type: ignore[call-arg]
        if isinstance(default, list):
            default = ",".join(default) or "(empty)"
        rows.append(f"| `DXAPI_{name.upper()}` | `{default}` | {field.description} |")
    return text[:start] + "\n".join(rows) + text[end:]


if __name__ == "__main__":
    for page, render in (("errors.md", errors_page), ("settings.md", settings_page)):
        path = DOCS / page
        path.write_text(render(path.read_text()))
