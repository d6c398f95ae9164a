"""The ``json`` codec: any JSON document, bounded so every backend stores it and every driver reads it back.

On write a document is refused (1306) beyond ``JSON_MAX_DEPTH`` nested levels, with integers outside the signed
64-bit range, numbers no double holds, or NUL and lone surrogates in keys or strings; it is stored native or as
text, as the column is. On read nothing fails: a value no answer can carry (nested deeper than
``JSON_RENDER_MAX_DEPTH``, text that is no JSON, a number beyond the double range) is :class:`Unrenderable`,
and the row renderer serves it as null. JSON values cannot be filtered (only ``isNull``) or sorted.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, ClassVar

import orjson
from sqlalchemy import Column
from sqlalchemy import types as sqltypes

from dxapi.fields.base import (
    Check,
    Codec,
    ColumnKind,
    FieldType,
    Invalid,
    Render,
    Rules,
    Schema,
    SqlForm,
    Unrenderable,
    encodable,
)
from dxapi.fields.numbers import INT64_MAX, INT64_MIN

# Nested arrays/objects a `json` value may have when written: MariaDB's JSON type refuses a 32nd level, and
# the limit is the same on every backend.
JSON_MAX_DEPTH = 31
# Deeper values written by other applications are still answered up to here; orjson refuses 255 levels in
# all, and the answer's envelope (`{"data":[{…}]}`, two more per included relation) needs some of them.
JSON_RENDER_MAX_DEPTH = 128
_ORJSON_INT_MIN, _ORJSON_INT_MAX = -(2**63), 2**64 - 1


def _double(value: int | float | Decimal) -> float:
    """The double a JSON number is stored as, or Invalid("value") when no double holds it: 400 digits, 1e400,
    and 1e-400, which would silently become 0."""
    try:
        number = float(value)
    except OverflowError:
        raise Invalid("value") from None
    if not math.isfinite(number) or (number == 0 and value != 0):
        raise Invalid("value")
    return number


def _storable_text(value: Any) -> bool:
    return isinstance(value, str) and "\x00" not in value and encodable(value)


def _storable_object(value: dict[Any, Any], depth: int) -> dict[Any, Any]:
    if depth >= JSON_MAX_DEPTH:
        raise Invalid("value")
    out = {}
    for key, item in value.items():
        if not _storable_text(key):
            raise Invalid("value")
        out[key] = storable_json(item, depth + 1)
    return out


def storable_json(value: Any, depth: int = 0) -> Any:
    """A JSON body value as every backend stores and every driver reads it back, or Invalid("value").

    PostgreSQL would keep 2^64, but no driver or encoder on the way back does; request bodies parse fractions
    as Decimal, so 1e400 must not turn into null.
    """
    if isinstance(value, dict):
        return _storable_object(value, depth)
    if isinstance(value, list):
        if depth >= JSON_MAX_DEPTH:
            raise Invalid("value")
        return [storable_json(item, depth + 1) for item in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise Invalid("value")
        return value
    if isinstance(value, (Decimal, float)):
        return _double(value)
    if isinstance(value, str):
        if not _storable_text(value):
            raise Invalid("value")
        return value
    raise Invalid("type")


def _openings(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def _answerable(value: Any, depth: int) -> Any:
    """A decoded JSON document as orjson can encode it: bounded depth, numbers in its range (a driver's own
    JSON decoder keeps integers of any size; they are answered as the nearest double, as orjson reads them)."""
    if isinstance(value, (dict, list)) and depth >= JSON_RENDER_MAX_DEPTH:
        raise Unrenderable(f"nested deeper than {JSON_RENDER_MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {key: _answerable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_answerable(item, depth + 1) for item in value]
    if type(value) is int and not _ORJSON_INT_MIN <= value <= _ORJSON_INT_MAX:
        try:
            return float(value)
        except OverflowError:
            raise Unrenderable("a number beyond the double range") from None
    if type(value) is float and not math.isfinite(value):
        raise Unrenderable("a number beyond the double range")
    return value


def _render_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            # Not JSON at all, or a number orjson will not read (1e400): SQLite and text columns hold anything.
            raise Unrenderable("the stored text is not JSON dxapi can read") from None
        if _openings(value) <= JSON_RENDER_MAX_DEPTH:
            return document  # cannot be too deep; the numbers orjson reads always fit its encoder
        value = document
    return _answerable(value, 0)


class JsonCodec(Codec):
    type = FieldType.JSON
    ordered = False
    comparable = False
    answers_null = True
    serves: ClassVar = {ColumnKind.JSON: 0, ColumnKind.TEXT: 1}

    def parse(self, value: Any, from_text: bool = False) -> Any:
        if from_text:
            raise Invalid("type", "JSON fields cannot be filtered")
        return storable_json(value)

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        if isinstance(column.type, sqltypes.JSON):
            return storable_json
        return lambda value: orjson.dumps(storable_json(value)).decode()

    def renderer(self, column: Column[Any] | None = None) -> Render | None:
        return _render_json

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        return {}

    def sql_form(self, column_type: sqltypes.TypeEngine[Any]) -> SqlForm:
        # Read as text: the driver-side decoder would fail the whole read on one row of text that is no JSON
        # (SQLite holds anything); the renderer decodes it, and answers null for such a row.
        return SqlForm.TEXT if isinstance(column_type, sqltypes.JSON) else SqlForm.COLUMN
