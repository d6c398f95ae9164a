"""What every field codec is, and the ways a value can fail; shared by every codec module.

A field type (``integer``, ``decimal`` …) is what the API promises on the wire, independent of the backend. Its
:class:`Codec` holds everything that type knows — SQLAlchemy's ``TypeEngine`` is the model: parsing (a filter
value from the URL or an operator object, a body value), the configured rules it allows and how they check,
rendering a database value, which columns it can serve, its OpenAPI schema and the SQL form its value is
compared in. Fed by nothing but SQLAlchemy column types and a field's rules; feeds the configuration checks
(``registry.model``), the snapshot (``registry.snapshot``: closures built once per field), read planning, the
SQL builder and the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from sqlalchemy import Column
from sqlalchemy import types as sqltypes


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


class ColumnKind(StrEnum):
    """What a reflected column type is, as far as the API types care (``columns.column_kind``)."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    FLOAT = "float"
    NUMERIC = "numeric"
    DATETIME = "datetime"
    DATE = "date"
    JSON = "json"
    UUID = "uuid"
    ENUM = "enum"
    TEXT = "text"


class SqlForm(StrEnum):
    """The SQL value of a field as the API answers it; ``sql.build.field_value`` builds it (``sql.dialect``)."""

    COLUMN = "column"  # the column itself
    MOMENT = "moment"  # a date-time, normalised where the backend keeps text (dialect.Moment)
    DAY = "day"  # a date, or the day of a date-time (dialect.Day)
    ROUNDED = "rounded"  # a NUMERIC at its scale (dialect.RoundedDecimal)
    TEXT = "text"  # read as text and decoded by the renderer (JSON)


Render = Callable[[Any], Any]
Parse = Callable[[Any], Any]  # filter value (URL text, operator JSON) → bound value, or Invalid
Check = Callable[[Any], Any]  # body value → bound value, or Invalid


class Invalid(ValueError):
    """A value refused. ``kind`` is ``type`` (1305), ``value`` (1306) or ``url`` (1316); the message is the reason
    a filter error (2001) shows. A ``ValueError``, so callers of a filter parser need not know this class."""

    def __init__(self, kind: str, reason: str | None = None) -> None:
        super().__init__(reason or kind)
        self.kind = kind


class Unrenderable(ValueError):
    """A stored value no JSON answer can carry faithfully; the message says why (never the value)."""


class Rules(Protocol):
    """A field's configured validation rules (``registry.model.FieldRules``), as the codecs read them."""

    @property
    def is_required(self) -> bool: ...
    @property
    def min(self) -> int | float | str | None: ...
    @property
    def max(self) -> int | float | str | None: ...
    @property
    def min_length(self) -> int | None: ...
    @property
    def max_length(self) -> int | None: ...
    @property
    def precision(self) -> int | None: ...
    @property
    def scale(self) -> int | None: ...
    @property
    def pattern(self) -> str | None: ...
    @property
    def enum(self) -> tuple[str | int, ...] | None: ...
    @property
    def format(self) -> str | None: ...
    @property
    def constraints(self) -> tuple[str, ...]: ...


Schema = dict[str, Any]
# Every type allows these two rule keys.
COMMON_RULES = frozenset({"isRequired", "constraints"})


class Codec:
    """One field type. Subclasses set the class attributes and override what differs from the defaults.

    ``parse(value, from_text)`` holds the type's own rules, shared by both input forms: ``from_text=True`` reads
    a filter value (URL text such as ``12``, or a scalar of an operator object, read leniently), ``False`` a body
    value (the JSON type must be the type's own). The per-field closures add the column's limits
    (``parser``) and, for bodies, the configured rules and the stored form (``checker``).
    """

    type: ClassVar[FieldType]
    rules: ClassVar[frozenset[str]] = COMMON_RULES  # installer validation keys the type allows
    ordered: ClassVar[bool] = True  # gt/gte/lt/lte apply
    likeable: ClassVar[bool] = False  # like/ilike apply
    comparable: ClassVar[bool] = True  # any operator but isNull applies (and sorting)
    answers_null: ClassVar[bool] = False  # may answer null even on a NOT NULL column (Unrenderable)
    serves: ClassVar[Mapping[ColumnKind, int]]  # column kinds it fits, 0 = the type to suggest first

    def parse(self, value: Any, from_text: bool = False) -> Any:
        raise NotImplementedError

    def adapt(self, column: Column[Any]) -> None:
        """Adjust the reflected column's SQLAlchemy type so the driver hands over what the codec expects; safe,
        since a reflected Table belongs to one snapshot alone. Most types need nothing."""

    def parser(self, column: Column[Any], backend: str) -> Parse:
        """The filter parser of a field on ``column``."""
        parse = self.parse

        def parse_text(value: Any) -> Any:
            return parse(value, True)

        return parse_text

    def checker(self, rules: Rules, column: Column[Any], backend: str) -> Check:
        """The body validator of a field on ``column`` with ``rules``."""
        parse = self.parse

        def check(value: Any) -> Any:
            return parse(value, False)

        return check

    def renderer(self, column: Column[Any] | None = None) -> Render | None:
        """Database value → JSON-ready value; None when the driver's value is already right (the common case).
        ``column``: the column it serves, where that changes what the driver hands over."""
        return None

    def bound_problem(self, value: object) -> str | None:
        """Why ``value`` cannot be this type's ``min``/``max`` rule (None: it can)."""
        return None

    def schema(self, rules: Rules, column: Column[Any], *, for_input: bool) -> Schema:
        """The JSON Schema of a value (a new dict each call: the caller adds to it)."""
        raise NotImplementedError

    def sql_form(self, column_type: sqltypes.TypeEngine[Any]) -> SqlForm:
        return SqlForm.COLUMN

    def bind_type(self, column_type: sqltypes.TypeEngine[Any]) -> sqltypes.TypeEngine[Any]:
        """The SQLAlchemy type a filter value is bound with: the column's, unless the type compares otherwise."""
        return column_type


def converted_bounds(rules: Rules, convert: Callable[[Any], Any]) -> tuple[Any, Any]:
    """The ``min``/``max`` rules as values of the type (the configuration checks made sure they convert)."""
    return (
        convert(rules.min) if rules.min is not None else None,
        convert(rules.max) if rules.max is not None else None,
    )


def in_bounds(value: Any, low: Any, high: Any) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def encodable(value: str) -> bool:
    """Whether UTF-8 holds the text: a lone surrogate (``"\\ud800"`` is valid JSON) no backend can store."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def describe_rules(rules: Rules) -> str:
    """Spryker's ``Field rules:`` text: ``max_length: 2, min_length: 2, is_required: 1``."""
    r = rules
    parts = [
        ("min", r.min),
        ("max", r.max),
        ("precision", r.precision),
        ("scale", r.scale),
        ("max_length", r.max_length),
        ("min_length", r.min_length),
        ("pattern", r.pattern),
        ("enum", ", ".join(str(v) for v in r.enum) if r.enum else None),
        ("format", r.format),
    ]
    text = [f"{name}: {value}" for name, value in parts if value is not None]
    text.append(f"is_required: {int(r.is_required)}")
    return ", ".join(text)
