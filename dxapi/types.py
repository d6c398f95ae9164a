"""The API's field types under their short, stage-neutral import path; the codecs live in ``dxapi.fields``.

``RENDERERS`` (database value → JSON-ready value, None: copied as is) and ``parse_float`` (a float filter
value) are views of the codecs, kept for callers of the earlier module.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from dxapi.fields import CODECS, JSON_MAX_DEPTH, JSON_RENDER_MAX_DEPTH, FieldType, Render, Unrenderable

__all__ = ["JSON_MAX_DEPTH", "JSON_RENDER_MAX_DEPTH", "RENDERERS", "FieldType", "Unrenderable", "parse_float"]

RENDERERS: Mapping[FieldType, Render | None] = MappingProxyType(
    {field_type: codec.renderer() for field_type, codec in CODECS.items()}
)


def parse_float(value: Any) -> float:
    """A float filter value (URL text or an operator object's number), or ``ValueError`` with the reason."""
    number: float = CODECS[FieldType.FLOAT].parse(value, True)
    return number
