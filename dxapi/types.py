"""The API's field types under their short, stage-neutral import path; the codecs live in ``dxapi.fields``."""

from __future__ import annotations

from dxapi.fields import JSON_MAX_DEPTH, JSON_RENDER_MAX_DEPTH, FieldType, Unrenderable

__all__ = ["JSON_MAX_DEPTH", "JSON_RENDER_MAX_DEPTH", "FieldType", "Unrenderable"]
