"""Field validators, compiled once per snapshot: JSON value → value to bind, or a precise problem.

Fed by a field's configuration and its reflected column; feeds write planning. A validator checks the JSON
type (1305), the configured rules (1306, ``url`` constraint 1316) and the limits of the column itself —
VARCHAR length, integer width, NUMERIC precision — because SQLite would store anything and MariaDB would
truncate. Nothing here runs per request except the closures it returns.

    check = build_validator(field_config, column, "postgresql")
    check(12)        → 12
    check("12")      → raises Invalid("type")
    check(10**20)    → raises Invalid("value")
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Column
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql

from dxapi.registry.model import FieldConfig
from dxapi.types import INT64_MAX, INT64_MIN, JSON_MAX_DEPTH, FieldType

Check = Callable[[Any], Any]

_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL_FORMAT = re.compile(r"https?://[^\s/$.?#][^\s]*", re.IGNORECASE)
# Spryker's `url` constraint: a path starting with `/`, lower-case first segment (not anchored at the end).
_URL_CONSTRAINT = re.compile(r"^/([a-z0-9\-._~%!$&'()*+,;=@]+(/[a-zA-Z0-9\-._~%!$&'()*+,;=:@]*)*)?")


class Invalid(Exception):
    """``kind`` is ``type`` (1305), ``value`` (1306) or ``url`` (1316)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def integer_range(column_type: sqltypes.TypeEngine[Any], backend: str) -> tuple[int, int]:
    """The values a column can hold: its declared width; a plain SQLite INTEGER is 64-bit (the rowid)."""
    if isinstance(column_type, sqltypes.BigInteger):
        bits = 64
    elif isinstance(column_type, mysql.TINYINT):
        bits = 8
    elif isinstance(column_type, sqltypes.SmallInteger):
        bits = 16
    elif isinstance(column_type, mysql.MEDIUMINT):
        bits = 24
    else:
        bits = 64 if backend == "sqlite" else 32
    if getattr(column_type, "unsigned", False):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def describe_rules(config: FieldConfig) -> str:
    """Spryker's ``Field rules:`` text: ``max_length: 2, min_length: 2, is_required: 1``."""
    r = config.rules
    parts = [
        ("min", r.min), ("max", r.max), ("precision", r.precision), ("scale", r.scale),
        ("max_length", r.max_length), ("min_length", r.min_length), ("pattern", r.pattern),
        ("enum", ", ".join(str(v) for v in r.enum) if r.enum else None), ("format", r.format),
    ]
    text = [f"{name}: {value}" for name, value in parts if value is not None]
    text.append(f"is_required: {int(r.is_required)}")
    return ", ".join(text)


def build_validator(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    builders = {
        FieldType.INTEGER: _integer,
        FieldType.STRING: _string,
        FieldType.BOOLEAN: _boolean,
        FieldType.DECIMAL: _decimal,
        FieldType.FLOAT: _float,
        FieldType.DATE: _date,
        FieldType.DATETIME: _datetime,
        FieldType.JSON: _json,
        FieldType.UUID: _uuid,
    }
    return builders[config.type](config, column, backend)


def _bounds(config: FieldConfig, convert: Callable[[Any], Any]) -> tuple[Any, Any]:
    r = config.rules
    return (
        convert(r.min) if r.min is not None else None,
        convert(r.max) if r.max is not None else None,
    )


def _in_bounds(value: Any, low: Any, high: Any) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _integer(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    low, high = _bounds(config, int)
    col_low, col_high = integer_range(column.type, backend)
    enum = frozenset(config.rules.enum) if config.rules.enum else None

    def check(value: Any) -> Any:
        if type(value) is not int:
            raise Invalid("type")
        if not (col_low <= value <= col_high and _in_bounds(value, low, high)):
            raise Invalid("value")
        if enum is not None and value not in enum:
            raise Invalid("value")
        return value

    return check


def _string(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    r = config.rules
    column_length = column.type.length if isinstance(column.type, sqltypes.String) else None
    limits = [n for n in (r.max_length, column_length) if n is not None]
    max_length = min(limits) if limits else None
    min_length = r.min_length
    pattern = re.compile(r.pattern) if r.pattern else None
    enum = frozenset(r.enum) if r.enum else None
    formats: dict[str, Callable[[str], object]] = {
        "email": _EMAIL.fullmatch, "url": _URL_FORMAT.fullmatch, "uuid": _is_uuid,
    }
    format_check = formats[r.format] if r.format else None
    url_constraint = "url" in r.constraints

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise Invalid("type")
        if "\x00" in value or not _encodable(value):
            raise Invalid("value")
        if max_length is not None and len(value) > max_length:
            raise Invalid("value")
        if min_length is not None and len(value) < min_length:
            raise Invalid("value")
        if pattern is not None and pattern.search(value) is None:
            raise Invalid("value")
        if enum is not None and value not in enum:
            raise Invalid("value")
        if format_check is not None and not format_check(value):
            raise Invalid("value")
        if url_constraint and _URL_CONSTRAINT.match(value) is None:
            raise Invalid("url")
        return value

    return check


def _encodable(value: str) -> bool:
    # A lone surrogate (`"\ud800"` is valid JSON) cannot be stored in UTF-8 by any backend.
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _boolean(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not bool:
            raise Invalid("type")
        return value

    return check


def _decimal(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    r = config.rules
    low, high = _bounds(config, lambda v: Decimal(str(v)))
    precision, scale = r.precision, r.scale
    if precision is None and isinstance(column.type, sqltypes.Numeric) and column.type.precision:
        precision, scale = column.type.precision, column.type.scale
    integer_column = isinstance(column.type, sqltypes.Integer)
    col_low, col_high = integer_range(column.type, backend) if integer_column else (None, None)

    def check(value: Any) -> Any:
        if type(value) is bool or not isinstance(value, (str, int, Decimal)):
            raise Invalid("type")
        text = value if isinstance(value, str) else format(value, "f")
        if not _DECIMAL_TEXT.fullmatch(text):
            raise Invalid("type")
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern rules it out
            raise Invalid("type") from None
        if precision is not None and not _fits(text, precision, scale or 0):
            raise Invalid("value")
        if not _in_bounds(number, low, high):
            raise Invalid("value")
        if integer_column:
            if number != number.to_integral_value() or not col_low <= number <= col_high:  # type: ignore[operator]
                raise Invalid("value")
            return int(number)
        return number

    return check


def _fits(text: str, precision: int, scale: int) -> bool:
    """Spryker's rule: integer digits ≤ precision - scale, fractional digits (trailing zeros dropped) ≤ scale."""
    whole, _, fraction = text.lstrip("-").partition(".")
    whole = whole.lstrip("0")
    fraction = fraction.rstrip("0")
    return len(whole) <= precision - scale and len(fraction) <= scale


def _float(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    low, high = _bounds(config, float)

    def check(value: Any) -> Any:
        if type(value) is bool or not isinstance(value, (int, Decimal)):
            raise Invalid("type")
        number = _double(value)
        if not _in_bounds(number, low, high):
            raise Invalid("value")
        return number

    return check


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


def _date(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    low, high = _bounds(config, dt.date.fromisoformat)

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise Invalid("type")
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise Invalid("value") from None
        if not _in_bounds(day, low, high):
            raise Invalid("value")
        return day

    return check


def _datetime(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    aware = isinstance(column.type, sqltypes.DateTime) and bool(column.type.timezone)
    # MariaDB's DATETIME keeps whole seconds unless declared DATETIME(fsp): it would cut the rest silently.
    digits = (getattr(column.type, "fsp", None) or 0) if backend == "mysql" else 6
    step = 10 ** (6 - digits)

    def normalise(moment: dt.datetime) -> dt.datetime:
        if aware and moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        if not aware and moment.tzinfo is not None:
            return moment.astimezone(dt.UTC).replace(tzinfo=None)
        return moment

    low, high = _bounds(config, lambda v: normalise(dt.datetime.fromisoformat(v)))

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise Invalid("type")
        try:
            moment = normalise(dt.datetime.fromisoformat(value))
        except (ValueError, OverflowError):
            raise Invalid("value") from None
        if moment.microsecond % step or not _in_bounds(moment, low, high):
            raise Invalid("value")
        return moment

    return check


def _json(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    import orjson

    native = isinstance(column.type, sqltypes.JSON)

    def check(value: Any) -> Any:
        document = _storable_json(value, 0)
        return document if native else orjson.dumps(document).decode()

    return check


def _storable_json(value: Any, depth: int) -> Any:
    """A JSON body value as every backend stores and every driver reads it back, or Invalid("value").

    Bounded to ``JSON_MAX_DEPTH`` nested levels, integers to the signed 64-bit range (PostgreSQL would keep
    2^64, but no driver or encoder on the way back does) and fractions to finite doubles (request bodies parse
    them as Decimal: 1e400 must not turn into null); no NUL or lone surrogate in keys or strings.
    """
    if isinstance(value, dict):
        if depth >= JSON_MAX_DEPTH:
            raise Invalid("value")
        out = {}
        for key, item in value.items():
            if not _storable_text(key):
                raise Invalid("value")
            out[key] = _storable_json(item, depth + 1)
        return out
    if isinstance(value, list):
        if depth >= JSON_MAX_DEPTH:
            raise Invalid("value")
        return [_storable_json(item, depth + 1) for item in value]
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


def _storable_text(value: Any) -> bool:
    return isinstance(value, str) and "\x00" not in value and _encodable(value)


def _uuid(config: FieldConfig, column: Column[Any], backend: str) -> Check:
    native = isinstance(column.type, sqltypes.Uuid)
    # A CHAR(32) column holds the form SQLAlchemy's Uuid type writes on backends without a uuid type.
    undashed = isinstance(column.type, sqltypes.String) and column.type.length == 32

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise Invalid("type")
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise Invalid("value") from None
        if native:
            return parsed
        return parsed.hex if undashed else str(parsed)

    return check
