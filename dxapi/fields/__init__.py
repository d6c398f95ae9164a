"""Field types and one codec per type (``CODECS``): everything a type knows, on one object.

``base`` defines the codec interface and the failures (``Invalid``, ``Unrenderable``); ``numbers``, ``text``,
``moments`` and ``documents`` hold the codecs; ``columns`` classifies reflected column types; ``catalogue``
lists the codecs. Imports only SQLAlchemy and orjson: every stage may use it.
"""

from dxapi.fields.base import (
    Check,
    Codec,
    ColumnKind,
    FieldType,
    Invalid,
    Parse,
    Render,
    Rules,
    SqlForm,
    Unrenderable,
    describe_rules,
)
from dxapi.fields.catalogue import CODECS, compatible_types
from dxapi.fields.documents import JSON_MAX_DEPTH, JSON_RENDER_MAX_DEPTH

__all__ = [
    "CODECS",
    "JSON_MAX_DEPTH",
    "JSON_RENDER_MAX_DEPTH",
    "Check",
    "Codec",
    "ColumnKind",
    "FieldType",
    "Invalid",
    "Parse",
    "Render",
    "Rules",
    "SqlForm",
    "Unrenderable",
    "compatible_types",
    "describe_rules",
]
