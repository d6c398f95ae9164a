"""The calendar codecs: ``date`` and ``datetime`` (ISO 8601 text on the wire).

A date-time is bound as its column holds it: naive UTC for a column without time zone, aware for one with it;
MariaDB's DATETIME keeps only the fraction digits it declares, so a body value with more is refused rather than
cut. In SQL both are compared in the normalised form the API answers (``SqlForm.MOMENT``/``DAY``).
"""

from __future__ import annotations

import datetime as dt
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
)

_RULES = COMMON_RULES | {"min", "max"}
# RFC 3339 demands an offset; a column without time zone holds local date-times.
LOCAL_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?$"


def _iso_problem(parse: Any, name: str, value: object) -> str | None:
    try:
        parse(value)
    except (TypeError, ValueError):
        return f"must be an ISO 8601 {name} string"
    return None


def _render_date(value: Any) -> Any:
    # SQLite may hand back a datetime for a DATE column written by another tool.
    if isinstance(value, dt.datetime):
        return value.date()
    return value


class DateCodec(Codec):
    type = FieldType.DATE
    rules = _RULES
    serves: ClassVar = {ColumnKind.DATE: 0, ColumnKind.DATETIME: 1}

    def parse(self, value: Any, from_text: bool = False) -> dt.date:
        if type(value) is not str:
            raise Invalid("type", "expected an ISO 8601 date such as 2026-01-31")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise Invalid("value", f"`{value}` is not an ISO 8601 date") from None

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        low, high = converted_bounds(rules, dt.date.fromisoformat)
        parse = self.parse

        def check(value: Any) -> Any:
            day = parse(value, False)
            if not in_bounds(day, low, high):
                raise Invalid("value")
            return day

        return check

    def renderer(self, column: Column[Any] | None = None) -> Render | None:
        return _render_date

    def bound_problem(self, value: object) -> str | None:
        return _iso_problem(dt.date.fromisoformat, "date", value)

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        return {"type": "string", "format": "date"}

    def sql_form(self, column_type: sqltypes.TypeEngine[Any]) -> SqlForm:
        return SqlForm.DAY

    def bind_type(self, column_type: sqltypes.TypeEngine[Any]) -> sqltypes.TypeEngine[Any]:
        return sqltypes.Date()  # also for the day of a date-time column


def _aware(column: Column[Any]) -> bool:
    return isinstance(column.type, sqltypes.DateTime) and bool(column.type.timezone)


def _for_column(moment: dt.datetime, aware: bool, value: str) -> dt.datetime:
    """A parsed date-time as the column holds it: aware (UTC when none was given), or naive UTC."""
    if aware and moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    if not aware and moment.tzinfo is not None:
        try:
            return moment.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC counterpart
            raise Invalid("value", f"`{value}` is outside the representable range") from None
    return moment


class DatetimeCodec(Codec):
    type = FieldType.DATETIME
    rules = _RULES
    serves: ClassVar = {ColumnKind.DATETIME: 0}

    def parse(self, value: Any, from_text: bool = False) -> dt.datetime:
        if type(value) is not str:
            raise Invalid("type", "expected an ISO 8601 date-time such as 2026-01-31T12:00:00Z")
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise Invalid("value", f"`{value}` is not an ISO 8601 date-time") from None

    def parser(self, column: Column[Any], backend: str) -> Parse:
        aware = _aware(column)
        parse = self.parse

        def parse_for_column(value: Any) -> dt.datetime:
            return _for_column(parse(value, True), aware, value)

        return parse_for_column

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        aware = _aware(column)
        # MariaDB's DATETIME keeps whole seconds unless declared DATETIME(fsp): it would cut the rest silently.
        digits = (getattr(column.type, "fsp", None) or 0) if backend == "mysql" else 6
        step = 10 ** (6 - digits)
        parse = self.parse
        low, high = converted_bounds(rules, lambda v: _for_column(parse(v), aware, v))

        def check(value: Any) -> Any:
            moment = _for_column(parse(value, False), aware, value)
            if moment.microsecond % step or not in_bounds(moment, low, high):
                raise Invalid("value")
            return moment

        return check

    def bound_problem(self, value: object) -> str | None:
        return _iso_problem(dt.datetime.fromisoformat, "datetime", value)

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        if getattr(column.type, "timezone", False):
            return {"type": "string", "format": "date-time"}
        return {
            "type": "string",
            "pattern": LOCAL_DATETIME,
            "description": "ISO 8601 date-time; without an offset it is read as UTC when filtering.",
        }

    def sql_form(self, column_type: sqltypes.TypeEngine[Any]) -> SqlForm:
        return SqlForm.MOMENT
