"""Field types of the API and their codecs, shared by every stage.

A field type (``integer``, ``decimal`` …) is what the API promises on the wire, independent of the backend.
Two codecs per type live here:

* ``render``: database value → JSON-ready value (``Decimal('20.00')`` → ``"20.00"``, MySQL ``1`` → ``true``).
  ``None`` means the driver's value is already right and the row can be copied as is — the common case.
* ``parse_text``: a value from a URL (filters, ``/{id}``) → Python value for a bound parameter, or
  :class:`ValueError` with a human reason. ``parse_json`` does the same for a JSON value (inside an operator
  object).

Rendering never fails on what is in the database: a value no JSON answer can carry (a ``json`` value nested
deeper than ``JSON_RENDER_MAX_DEPTH``, text that is no JSON, a number beyond the double range) raises
:class:`Unrenderable`, and the row renderer serves that field as null (``registry.snapshot``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import orjson


class FieldType(StrEnum):
    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"
    DECIMAL = "decimal"
    FLOAT = "float"
    DATE = "date"
    DATETIME = "datetime"
    JSON = "json"
    UUID = "uuid"


Render = Callable[[Any], Any]
Parse = Callable[[Any], Any]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Nested arrays/objects a `json` value may have when written: MariaDB's JSON type refuses a 32nd level, and
# the limit is the same on every backend.
JSON_MAX_DEPTH = 31
# Deeper values written by other applications are still answered up to here; orjson refuses 255 levels in
# all, and the answer's envelope (`{"data":[{…}]}`, two more per included relation) needs some of them.
JSON_RENDER_MAX_DEPTH = 128
_ORJSON_INT_MIN, _ORJSON_INT_MAX = -(2**63), 2**64 - 1
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _render_decimal(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


def _render_float(value: Any) -> Any:
    # MariaDB hands DOUBLE back as Decimal; JSON wants a number.
    return float(value) if isinstance(value, Decimal) else value


def _render_boolean(value: Any) -> Any:
    return None if value is None else bool(value)


class Unrenderable(ValueError):
    """A stored value no JSON answer can carry faithfully; the message says why (never the value)."""


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


def _openings(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def _answerable(value: Any, depth: int) -> Any:
    """A decoded JSON document as orjson can encode it: bounded depth, numbers in its range (a driver's own
    JSON decoder keeps integers of any size; they are answered as the nearest double, as orjson reads them)."""
    if isinstance(value, dict):
        if depth >= JSON_RENDER_MAX_DEPTH:
            raise Unrenderable(f"nested deeper than {JSON_RENDER_MAX_DEPTH} levels")
        return {key: _answerable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        if depth >= JSON_RENDER_MAX_DEPTH:
            raise Unrenderable(f"nested deeper than {JSON_RENDER_MAX_DEPTH} levels")
        return [_answerable(item, depth + 1) for item in value]
    if type(value) is int and not _ORJSON_INT_MIN <= value <= _ORJSON_INT_MAX:
        try:
            return float(value)
        except OverflowError:
            raise Unrenderable("a number beyond the double range") from None
    if type(value) is float and not math.isfinite(value):
        raise Unrenderable("a number beyond the double range")
    return value


def _render_text(value: Any) -> Any:
    return None if value is None else str(value)


def _render_date(value: Any) -> Any:
    # SQLite may hand back a datetime for a DATE column written by another tool.
    if isinstance(value, dt.datetime):
        return value.date()
    return value


RENDERERS: dict[FieldType, Render | None] = {
    FieldType.INTEGER: None,
    FieldType.STRING: None,
    FieldType.BOOLEAN: _render_boolean,
    FieldType.DECIMAL: _render_decimal,
    FieldType.FLOAT: _render_float,
    FieldType.DATE: _render_date,
    FieldType.DATETIME: None,
    FieldType.JSON: _render_json,
    FieldType.UUID: _render_text,
}


def parse_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, str):
        if not _INTEGER_TEXT.fullmatch(value) or len(value) > 20:
            raise ValueError(f"`{value[:40]}` is not a 64-bit integer")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("expected an integer")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("integer out of the 64-bit range")
    return value


def parse_string(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # `{"in":[1,2]}` on a code column means the texts "1" and "2"
    if not isinstance(value, str):
        raise ValueError("expected a string")
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # `"\ud800"` inside an operator object: no backend can compare it
            raise ValueError("the text is not valid Unicode") from None
    return value


def parse_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError("expected true or false")


def parse_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("expected a decimal number")
    if isinstance(value, Decimal):
        value = format(value, "f") if value.is_finite() else "NaN"
    elif isinstance(value, (int, float)):
        value = repr(value)
    if not isinstance(value, str) or not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError("expected a decimal number such as 12.50")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the pattern above rules this out
        raise ValueError("expected a decimal number") from exc


def parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError as exc:
            raise ValueError(f"`{value[:40]}` is not a number") from exc
    if not isinstance(value, (int, float, Decimal)):
        raise ValueError("expected a finite number")
    try:
        number = float(value)
    except OverflowError:  # an integer literal of hundreds of digits
        raise ValueError("the number is outside the range of a double") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def parse_date(value: Any) -> dt.date:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date such as 2026-01-31")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"`{value}` is not an ISO 8601 date") from exc


def parse_datetime(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time such as 2026-01-31T12:00:00Z")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"`{value}` is not an ISO 8601 date-time") from exc


def parse_uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ValueError(f"`{value}` is not a UUID") from exc


def parse_uuid_as_stored(value: Any) -> str:
    """A UUID for a text column: checked, but compared as given. Such columns hold whatever form their writer
    chose (SQLAlchemy's 32 hex digits, upper case); a value the API answered must find its row again."""
    parse_uuid(value)
    text: str = value
    return text


def _parse_json_text(value: Any) -> Any:
    raise ValueError("JSON fields cannot be filtered")


PARSERS: dict[FieldType, Parse] = {
    FieldType.INTEGER: parse_integer,
    FieldType.STRING: parse_string,
    FieldType.BOOLEAN: parse_boolean,
    FieldType.DECIMAL: parse_decimal,
    FieldType.FLOAT: parse_float,
    FieldType.DATE: parse_date,
    FieldType.DATETIME: parse_datetime,
    FieldType.JSON: _parse_json_text,
    FieldType.UUID: parse_uuid,
}


def integer_within(low: int, high: int) -> Parse:
    """An integer parser bounded by what the column can hold (binding 2^31 to INT4 fails in the driver)."""

    def parse_in_range(value: Any) -> int:
        number = parse_integer(value)
        if not low <= number <= high:
            raise ValueError(f"{number} is outside the column's range {low}..{high}")
        return number

    return parse_in_range


def datetime_for_column(parse: Parse, timezone_aware: bool) -> Parse:
    """Wrap a datetime parser so its result matches the column: naive UTC for naive columns."""

    def parse_for_column(value: Any) -> Any:
        moment = parse(value)
        if timezone_aware and moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        if not timezone_aware and moment.tzinfo is not None:
            try:
                return moment.astimezone(dt.UTC).replace(tzinfo=None)
            except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC counterpart
                raise ValueError(f"`{value}` is outside the representable range") from None
        return moment

    return parse_for_column
