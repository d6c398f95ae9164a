"""The number codecs: ``integer``, ``decimal``, ``float`` and ``boolean``.

One parser per type reads a filter value and a body value with the same rules (the 64-bit range, the decimal
syntax, a finite double); the field's closures add the column's width, NUMERIC precision and the configured
``min``/``max``/``enum``. Rendering: decimals as exact strings (``"20.00"``), MariaDB's DOUBLE-as-Decimal as a
number, its TINYINT booleans as ``true``/``false``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import Column
from sqlalchemy import types as sqltypes

from dxapi.fields.base import (
    COMMON_RULES,
    Check,
    Codec,
    ColumnKind,
    FieldType,
    Invalid,
    Parse,
    Render,
    Rules,
    Schema,
    SqlForm,
    converted_bounds,
    in_bounds,
    is_number,
)
from dxapi.fields.columns import integer_range

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_BOUNDS = frozenset({"min", "max"})


def _number_problem(value: object) -> str | None:
    return None if is_number(value) else "must be a number"


class IntegerCodec(Codec):
    type = FieldType.INTEGER
    rules = COMMON_RULES | _BOUNDS | {"enum"}
    serves: ClassVar = {ColumnKind.INTEGER: 0, ColumnKind.BOOLEAN: 1}

    def parse(self, value: Any, from_text: bool = False) -> int:
        if from_text and type(value) is str:
            if not _INTEGER_TEXT.fullmatch(value):
                raise Invalid("type", f"`{value[:40]}` is not a 64-bit integer")
            if len(value) > 20:  # no need to read thousands of digits to know
                raise Invalid("value", f"`{value[:40]}` is not a 64-bit integer")
            value = int(value)
        if type(value) is not int:
            raise Invalid("type", "expected an integer")
        if not INT64_MIN <= value <= INT64_MAX:
            raise Invalid("value", "integer out of the 64-bit range")
        return value

    def parser(self, column: Column[Any], backend: str) -> Parse:
        # Bounded by what the column can hold: binding 2^31 to INT4 fails in the driver.
        low, high = integer_range(column.type, backend)
        parse = self.parse

        def parse_in_range(value: Any) -> int:
            number = parse(value, True)
            if not low <= number <= high:
                raise Invalid("value", f"{number} is outside the column's range {low}..{high}")
            return number

        return parse_in_range

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        low, high = converted_bounds(rules, int)
        col_low, col_high = integer_range(column.type, backend)
        enum = frozenset(rules.enum) if rules.enum else None
        parse = self.parse

        def check(value: Any) -> Any:
            number = parse(value, False)
            if not (col_low <= number <= col_high and in_bounds(number, low, high)):
                raise Invalid("value")
            if enum is not None and number not in enum:
                raise Invalid("value")
            return number

        return check

    def bound_problem(self, value: object) -> str | None:
        return _number_problem(value) or (None if isinstance(value, int) else "must be an integer")

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        schema: Schema = {"type": "integer", "format": "int64"}
        if rules.min is not None:
            schema["minimum"] = rules.min
        if rules.max is not None:
            schema["maximum"] = rules.max
        if rules.enum:
            schema["enum"] = list(rules.enum)
        return schema


_TRUE, _FALSE = ("true", "1"), ("false", "0")


def _render_boolean(value: Any) -> Any:
    return None if value is None else bool(value)


class BooleanCodec(Codec):
    type = FieldType.BOOLEAN
    ordered = False
    serves: ClassVar = {ColumnKind.BOOLEAN: 0, ColumnKind.INTEGER: 1}

    def parse(self, value: Any, from_text: bool = False) -> bool:
        if type(value) is bool:
            return value
        if from_text and value in _TRUE:
            return True
        if from_text and value in _FALSE:
            return False
        raise Invalid("type", "expected true or false")

    def renderer(self, column: Column[Any] | None = None) -> Render | None:
        return _render_boolean

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        return {"type": "boolean"}


def _render_decimal(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


def _fits(text: str, precision: int, scale: int) -> bool:
    """Spryker's rule: integer digits ≤ precision - scale, fractional digits (trailing zeros dropped) ≤ scale."""
    whole, _, fraction = text.lstrip("-").partition(".")
    whole = whole.lstrip("0")
    fraction = fraction.rstrip("0")
    return len(whole) <= precision - scale and len(fraction) <= scale


class DecimalCodec(Codec):
    type = FieldType.DECIMAL
    rules = COMMON_RULES | _BOUNDS | {"precision", "scale"}
    serves: ClassVar = {ColumnKind.NUMERIC: 0, ColumnKind.FLOAT: 1, ColumnKind.INTEGER: 2}

    def text(self, value: Any, from_text: bool) -> str:
        """The decimal syntax of a value (``-12.50``): text, an integer, a Decimal; a double in a filter."""
        if type(value) is bool:
            raise Invalid("type", "expected a decimal number")
        if isinstance(value, Decimal):
            value = format(value, "f")
        elif type(value) is int or (from_text and type(value) is float):
            value = repr(value)  # exact, unlike format(value, "f"), which goes through a double
        if type(value) is not str or not DECIMAL_TEXT.fullmatch(value):
            raise Invalid("type", "expected a decimal number such as 12.50")
        return value

    def parse(self, value: Any, from_text: bool = False) -> Decimal:
        return Decimal(self.text(value, from_text))

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        low, high = converted_bounds(rules, lambda v: Decimal(str(v)))
        precision, scale = rules.precision, rules.scale
        if precision is None and isinstance(column.type, sqltypes.Numeric) and column.type.precision:
            precision, scale = column.type.precision, column.type.scale
        integer_column = isinstance(column.type, sqltypes.Integer)
        col_low, col_high = integer_range(column.type, backend) if integer_column else (None, None)
        text_of = self.text

        def check(value: Any) -> Any:
            text = text_of(value, False)
            number = Decimal(text)
            if precision is not None and not _fits(text, precision, scale or 0):
                raise Invalid("value")
            if not in_bounds(number, low, high):
                raise Invalid("value")
            if integer_column:
                if number != number.to_integral_value() or not in_bounds(number, col_low, col_high):
                    raise Invalid("value")
                return int(number)
            return number

        return check

    def renderer(self, column: Column[Any] | None = None) -> Render | None:
        return _render_decimal

    def bound_problem(self, value: object) -> str | None:
        return _number_problem(value)

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        # Decimals travel as strings ("20.00") so no precision is lost; numbers are accepted on input.
        text: Schema = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
        return {"oneOf": [text, {"type": "number"}]} if for_input else text

    def sql_form(self, column_type: sqltypes.TypeEngine[Any]) -> SqlForm:
        if isinstance(column_type, sqltypes.Numeric) and not isinstance(column_type, sqltypes.Float):
            return SqlForm.ROUNDED
        return SqlForm.COLUMN

    def bind_type(self, column_type: sqltypes.TypeEngine[Any]) -> sqltypes.TypeEngine[Any]:
        return sqltypes.Numeric(asdecimal=True)  # with the column's NUMERIC(p, s) 563.799 would be rounded first


def _render_float(value: Any) -> Any:
    # MariaDB hands DOUBLE back as Decimal; JSON wants a number.
    return float(value) if isinstance(value, Decimal) else value


_FILTER_NUMBERS = (int, float, Decimal)
_BODY_NUMBERS = (int, Decimal)  # a request body reads fractions as Decimal


class FloatCodec(Codec):
    type = FieldType.FLOAT
    rules = COMMON_RULES | _BOUNDS
    serves: ClassVar = {ColumnKind.FLOAT: 0, ColumnKind.NUMERIC: 1, ColumnKind.INTEGER: 3}

    def parse(self, value: Any, from_text: bool = False) -> float:
        if type(value) is bool:
            raise Invalid("type", "expected a number")
        if from_text and type(value) is str:
            try:
                value = float(value)
            except ValueError:
                raise Invalid("type", f"`{value[:40]}` is not a number") from None
        if not isinstance(value, _FILTER_NUMBERS if from_text else _BODY_NUMBERS):
            raise Invalid("type", "expected a finite number")
        try:
            number = float(value)
        except OverflowError:  # an integer literal of hundreds of digits
            raise Invalid("value", "the number is outside the range of a double") from None
        if not math.isfinite(number):
            raise Invalid("value", "expected a finite number")
        return number

    def adapt(self, column: Column[Any]) -> None:
        if isinstance(column.type, sqltypes.Float):
            # MariaDB reflects DOUBLE as asdecimal=True, and SQLAlchemy would round 3.9e-122 to Decimal("0E-10").
            column.type.asdecimal = False

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        low, high = converted_bounds(rules, float)
        parse = self.parse

        def check(value: Any) -> Any:
            number = parse(value, False)
            if number == 0 and value != 0:  # 1e-400 would be stored as 0
                raise Invalid("value")
            if not in_bounds(number, low, high):
                raise Invalid("value")
            return number

        return check

    def renderer(self, column: Column[Any] | None = None) -> Render | None:
        return _render_float

    def bound_problem(self, value: object) -> str | None:
        return _number_problem(value)

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        return {"type": "number"}
