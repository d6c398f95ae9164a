"""The text codecs: ``string`` and ``uuid``.

A string is any text a backend can store (no NUL, valid UTF-8), within the column's length and the configured
length, pattern, enum, format and Spryker's ``url`` constraint (1316). A uuid is checked when parsed and bound
in the form its column holds: a native uuid, SQLAlchemy's 32 hex digits in a CHAR(32), else dashed text; a
filter on a text column compares the value as given, since such columns hold whatever form their writer chose.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
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
    encodable,
)
from dxapi.fields.columns import column_kind

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL_FORMAT = re.compile(r"https?://[^\s/$.?#][^\s]*", re.IGNORECASE)
# Spryker's `url` constraint: a path starting with `/`, lower-case first segment (not anchored at the end).
_URL_CONSTRAINT = re.compile(r"^/([a-z0-9\-._~%!$&'()*+,;=@]+(/[a-zA-Z0-9\-._~%!$&'()*+,;=:@]*)*)?")
_OPENAPI_FORMATS = {"email": "email", "uuid": "uuid", "url": "uri"}


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_FORMATS: dict[str, Callable[[str], object]] = {
    "email": _EMAIL.fullmatch,
    "url": _URL_FORMAT.fullmatch,
    "uuid": _is_uuid,
}


class StringCodec(Codec):
    type = FieldType.STRING
    rules = COMMON_RULES | {"minLength", "maxLength", "pattern", "enum", "format"}
    likeable = True
    serves: ClassVar = {ColumnKind.TEXT: 0, ColumnKind.ENUM: 0, ColumnKind.UUID: 1, ColumnKind.NUMERIC: 2}

    def parse(self, value: Any, from_text: bool = False) -> str:
        if from_text and type(value) is int:
            value = str(value)  # `{"in":[1,2]}` on a code column means the texts "1" and "2"
        if type(value) is not str:
            raise Invalid("type", "expected a string")
        if "\x00" in value:
            raise Invalid("value", "NUL characters are not allowed")
        if not encodable(value):  # `"\ud800"`: no backend can store or compare it
            raise Invalid("value", "the text is not valid Unicode")
        return value

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        column_length = column.type.length if isinstance(column.type, sqltypes.String) else None
        limits = [n for n in (rules.max_length, column_length) if n is not None]
        max_length = min(limits) if limits else None
        min_length = rules.min_length
        pattern = re.compile(rules.pattern) if rules.pattern else None
        enum = frozenset(rules.enum) if rules.enum else None
        format_check = _FORMATS[rules.format] if rules.format else None
        url_constraint = "url" in rules.constraints
        parse = self.parse

        def check(value: Any) -> Any:
            text = parse(value, False)
            if max_length is not None and len(text) > max_length:
                raise Invalid("value")
            if min_length is not None and len(text) < min_length:
                raise Invalid("value")
            if pattern is not None and pattern.search(text) is None:
                raise Invalid("value")
            if enum is not None and text not in enum:
                raise Invalid("value")
            if format_check is not None and not format_check(text):
                raise Invalid("value")
            if url_constraint and _URL_CONSTRAINT.match(text) is None:
                raise Invalid("url")
            return text

        return check

    def renderer(self, column: Column[Any] | None = None) -> Render | None:
        # A code kept in a NUMERIC column comes back as a Decimal, which has no JSON string form of its own.
        if column is not None and column_kind(column.type) is ColumnKind.NUMERIC:
            return _render_text
        return None

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        schema: Schema = {"type": "string"}
        for key, value in (
            ("minLength", rules.min_length),
            ("maxLength", rules.max_length),
            ("pattern", rules.pattern),
        ):
            if value is not None:
                schema[key] = value
        if rules.enum:
            schema["enum"] = list(rules.enum)
        if rules.format in _OPENAPI_FORMATS:
            schema["format"] = _OPENAPI_FORMATS[rules.format]
        return schema


def _render_text(value: Any) -> Any:
    return None if value is None else str(value)


class UuidCodec(Codec):
    type = FieldType.UUID
    serves: ClassVar = {ColumnKind.UUID: 0, ColumnKind.TEXT: 2}

    def parse(self, value: Any, from_text: bool = False) -> uuid.UUID:
        if type(value) is not str:
            raise Invalid("type", "expected a UUID string")
        try:
            return uuid.UUID(value)
        except ValueError:
            raise Invalid("value", f"`{value}` is not a UUID") from None

    def parser(self, column: Column[Any], backend: str) -> Parse:
        parse = self.parse
        if isinstance(column.type, sqltypes.Uuid):
            return lambda value: str(parse(value, True))

        def parse_as_stored(value: Any) -> Any:
            # A text column holds the form its writer chose (SQLAlchemy's 32 hex digits, upper case): a value
            # the API answered must find its row again, so it is checked but compared as given.
            parse(value, True)
            return value

        return parse_as_stored

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        parse = self.parse
        if isinstance(column.type, sqltypes.Uuid):
            return lambda value: parse(value, False)
        if isinstance(column.type, sqltypes.String) and column.type.length == 32:
            # A CHAR(32) column holds the form SQLAlchemy's Uuid type writes on backends without a uuid type.
            return lambda value: parse(value, False).hex
        return lambda value: str(parse(value, False))

    def renderer(self, column: Column[Any] | None = None) -> Render | None:
        return _render_text

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        return {"type": "string", "format": "uuid"}
