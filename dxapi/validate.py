"""Body validators by field configuration: the entry point of ``dxapi.fields`` for callers holding a
``FieldConfig``. A validator is compiled once per snapshot (``registry.snapshot``) and raises :class:`Invalid`.

    check = build_validator(field_config, column, "postgresql")
    check(12)        → 12
    check("12")      → raises Invalid("type")
    check(10**20)    → raises Invalid("value")
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column

from dxapi.fields import CODECS, Check, Invalid
from dxapi.registry.model import FieldConfig

__all__ = ["Check", "Invalid", "build_validator"]


def build_validator(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    return CODECS[config.type].checker(config.rules, column, backend)
