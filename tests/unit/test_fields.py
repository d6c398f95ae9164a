"""The field codecs (``dxapi.fields``) without a database: one parser per type reads a filter value and a body
value with the same rules, the per-field closures add the column's limits to both, rendering copes with what
drivers hand back, and the column fit table is the one the configuration checks and the admin page use."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql

from dxapi.fields import CODECS, FieldType, Invalid, SqlForm, compatible_types
from dxapi.registry.model import FieldRules

T = FieldType
BOUNDED = settings(max_examples=60, deadline=None, database=None, derandomize=True)
NO_RULES = FieldRules()


def column(column_type: Any, name: str = "c") -> sa.Column[Any]:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column(name, column_type))
    return table.c[name]


def outcome(call: Any, value: Any) -> Any:
    """The value a parser returns, or the kind of its refusal: two forms agree when their outcomes do."""
    try:
        return call(value)
    except Invalid as refused:
        return ("refused", refused.kind)


def both(field_type: FieldType, text: str, value: Any) -> tuple[Any, Any]:
    codec = CODECS[field_type]
    return outcome(lambda v: codec.parse(v, True), text), outcome(codec.parse, value)


# --- one parser, two input forms ------------------------------------------------------------------------------


@BOUNDED
@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_integer_text_and_json_share_the_64_bit_range(number: int) -> None:
    text, body = both(T.INTEGER, str(number), number)
    assert text == body
    assert (text == number) is (-(2**63) <= number < 2**63)


@BOUNDED
@given(st.decimals(allow_nan=False, allow_infinity=False, places=4))
def test_decimal_text_and_json_share_the_syntax(number: Decimal) -> None:
    text = format(number, "f")
    assert both(T.DECIMAL, text, number) == (Decimal(text), Decimal(text))
    assert CODECS[T.DECIMAL].parse(text) == Decimal(text)  # a body may send the text itself


def test_decimal_integers_are_exact_in_both_forms() -> None:
    big = 2**60 + 1
    assert both(T.DECIMAL, str(big), big) == (Decimal(big), Decimal(big))
    for refused in ("1e5", "NaN", " 1", "1.", Decimal("NaN"), Decimal("Infinity"), True):
        assert outcome(lambda v: CODECS[T.DECIMAL].parse(v, True), refused) == ("refused", "type")


@BOUNDED
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_and_json_agree(number: float) -> None:
    text, body = both(T.FLOAT, repr(number), Decimal(repr(number)))
    assert text == body == number


@pytest.mark.parametrize(("text", "value"), [("1e400", Decimal("1e400")), (str(10**400), 10**400)])
def test_float_beyond_a_double_is_refused_in_both_forms(text: str, value: Any) -> None:
    assert both(T.FLOAT, text, value) == (("refused", "value"), ("refused", "value"))


@BOUNDED
@given(st.text(max_size=8))
def test_string_text_and_json_share_nul_and_unicode_rules(text: str) -> None:
    from_text, body = both(T.STRING, text, text)
    assert from_text == body
    assert (body == text) is ("\x00" not in text)  # hypothesis' text has no lone surrogates
    assert outcome(CODECS[T.STRING].parse, "\ud800") == ("refused", "value")


@BOUNDED
@given(st.dates())
def test_date_text_and_json_agree(day: dt.date) -> None:
    assert both(T.DATE, day.isoformat(), day.isoformat()) == (day, day)


@BOUNDED
@given(st.datetimes(timezones=st.none() | st.just(dt.UTC)))
def test_datetime_text_and_json_agree(moment: dt.datetime) -> None:
    assert both(T.DATETIME, moment.isoformat(), moment.isoformat()) == (moment, moment)


def test_boolean_text_forms_mean_the_json_values() -> None:
    for text, value in (("true", True), ("1", True), ("false", False), ("0", False)):
        assert both(T.BOOLEAN, text, value) == (value, value)
    assert both(T.BOOLEAN, "yes", "true") == (("refused", "type"), ("refused", "type"))


@BOUNDED
@given(st.uuids())
def test_uuid_text_and_json_agree(value: uuid.UUID) -> None:
    assert both(T.UUID, str(value), str(value)) == (value, value)


def test_json_is_never_a_filter_value() -> None:
    assert outcome(lambda v: CODECS[T.JSON].parse(v, True), "{}") == ("refused", "type")


def test_invalid_is_a_value_error_with_its_kind_and_reason() -> None:
    with pytest.raises(ValueError, match="64-bit") as refused:
        CODECS[T.INTEGER].parse("12x", True)
    assert isinstance(refused.value, Invalid) and refused.value.kind == "type"


# --- the column's limits, on both paths -----------------------------------------------------------------------


@BOUNDED
@given(st.integers(min_value=-(2**17), max_value=2**17))
def test_an_integer_column_bounds_filters_and_bodies_alike(number: int) -> None:
    small = column(sa.SmallInteger)
    parse = CODECS[T.INTEGER].parser(small, "postgresql")
    check = CODECS[T.INTEGER].checker(NO_RULES, small, "postgresql")
    fits = -(2**15) <= number < 2**15
    assert (outcome(parse, str(number)) == number) is fits
    assert (outcome(check, number) == number) is fits


def test_body_rules_apply_to_bodies_only() -> None:
    rules = FieldRules(min=0, max=10, enum=(1, 2))
    codec = CODECS[T.INTEGER]
    assert outcome(codec.checker(rules, column(sa.Integer), "sqlite"), 3) == ("refused", "value")
    assert outcome(codec.checker(rules, column(sa.Integer), "sqlite"), "1") == ("refused", "type")
    assert codec.parser(column(sa.Integer), "sqlite")("3") == 3  # a filter may look for any value


def test_datetime_is_bound_as_the_column_holds_it() -> None:
    codec = CODECS[T.DATETIME]
    naive, aware = column(sa.DateTime), column(sa.DateTime(timezone=True))
    given_text = "2026-01-31T12:00:00+02:00"
    assert codec.parser(naive, "sqlite")(given_text) == dt.datetime(2026, 1, 31, 10, 0)
    assert codec.checker(NO_RULES, naive, "sqlite")(given_text) == dt.datetime(2026, 1, 31, 10, 0)
    assert codec.parser(aware, "sqlite")("2026-01-31T12:00:00").tzinfo is dt.UTC
    # MariaDB's DATETIME without fsp keeps whole seconds: a fraction is refused, not cut.
    assert outcome(codec.checker(NO_RULES, naive, "mysql"), "2026-01-31T12:00:00.5") == ("refused", "value")


def test_uuid_is_bound_in_its_column_form() -> None:
    value = "0E5A4B3C-2D1E-4F60-8A9B-0C1D2E3F4A5B"
    codec = CODECS[T.UUID]
    parsed = uuid.UUID(value)
    assert codec.checker(NO_RULES, column(sa.Uuid), "postgresql")(value) == parsed
    assert codec.checker(NO_RULES, column(sa.CHAR(32)), "sqlite")(value) == parsed.hex
    assert codec.checker(NO_RULES, column(sa.String(36)), "sqlite")(value) == str(parsed)
    assert codec.parser(column(sa.String(36)), "sqlite")(value) == value  # compared as stored
    assert codec.parser(column(sa.Uuid), "postgresql")(value) == str(parsed)


def test_decimal_on_an_integer_column_is_whole_and_in_range() -> None:
    check = CODECS[T.DECIMAL].checker(NO_RULES, column(sa.SmallInteger), "postgresql")
    assert check("12.000") == 12 and type(check("12.000")) is int
    assert outcome(check, "12.5") == ("refused", "value")
    assert outcome(check, str(2**15)) == ("refused", "value")


# --- rendering what drivers hand back -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_type", "stored", "answered"),
    [
        (T.DECIMAL, Decimal("20.00"), "20.00"),
        (T.DECIMAL, Decimal("1E+2"), "100"),
        (T.DECIMAL, 0.1, "0.1"),  # SQLite's NUMERIC as a double
        (T.DECIMAL, 7, "7"),
        (T.FLOAT, Decimal("2.5"), 2.5),  # MariaDB's DOUBLE as Decimal
        (T.BOOLEAN, 1, True),  # MariaDB's TINYINT
        (T.BOOLEAN, 0, False),
        (T.DATE, dt.datetime(2026, 1, 31, 23, 59), dt.date(2026, 1, 31)),  # SQLite DATE written by another tool
        (T.UUID, uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (T.JSON, b'{"a": [1]}', {"a": [1]}),
        (T.JSON, '"text"', "text"),
    ],
)
def test_render_of_driver_values(field_type: FieldType, stored: Any, answered: Any) -> None:
    render = CODECS[field_type].renderer()
    assert render is not None
    assert render(stored) == answered
    assert render(None) is None


def test_types_copied_as_is_have_no_renderer() -> None:
    assert {t for t in FieldType if CODECS[t].renderer() is None} == {T.INTEGER, T.STRING, T.DATETIME}


# --- column fit, operators, rules -----------------------------------------------------------------------------

FIT = [
    (sa.Boolean(), (T.BOOLEAN, T.INTEGER)),
    (sa.Integer(), (T.INTEGER, T.BOOLEAN, T.DECIMAL, T.FLOAT)),
    (mysql.TINYINT(), (T.INTEGER, T.BOOLEAN, T.DECIMAL, T.FLOAT)),
    (sa.BigInteger(), (T.INTEGER, T.BOOLEAN, T.DECIMAL, T.FLOAT)),
    (sa.Float(), (T.FLOAT, T.DECIMAL)),
    (mysql.DOUBLE(), (T.FLOAT, T.DECIMAL)),
    (sa.Numeric(8, 2), (T.DECIMAL, T.FLOAT, T.STRING)),
    (sa.DateTime(), (T.DATETIME, T.DATE)),
    (sa.Date(), (T.DATE,)),
    (sa.JSON(), (T.JSON,)),
    (postgresql.JSONB(), (T.JSON,)),
    (sa.Uuid(), (T.UUID, T.STRING)),
    (postgresql.UUID(), (T.UUID, T.STRING)),
    (sa.Enum("a", "b"), (T.STRING,)),
    (sa.String(20), (T.STRING, T.JSON, T.UUID)),
    (sa.Text(), (T.STRING, T.JSON, T.UUID)),
    (sa.LargeBinary(), ()),
    (sa.Time(), ()),
]


@pytest.mark.parametrize(("column_type", "fitting"), FIT, ids=[repr(t) for t, _ in FIT])
def test_compatibility_table(column_type: Any, fitting: tuple[FieldType, ...]) -> None:
    assert compatible_types(column_type) == fitting


def test_operators_per_type() -> None:
    assert {t for t in FieldType if not CODECS[t].ordered} == {T.BOOLEAN, T.JSON}
    assert {t for t in FieldType if CODECS[t].likeable} == {T.STRING}
    assert {t for t in FieldType if not CODECS[t].comparable} == {T.JSON}


def test_rules_per_type() -> None:
    for codec in CODECS.values():
        assert {"isRequired", "constraints"} <= codec.rules
    assert CODECS[T.STRING].rules >= {"minLength", "maxLength", "pattern", "enum", "format"}
    assert CODECS[T.DECIMAL].rules >= {"min", "max", "precision", "scale"}
    assert CODECS[T.INTEGER].bound_problem(1.5) == "must be an integer"
    assert CODECS[T.FLOAT].bound_problem("1") == "must be a number"
    assert CODECS[T.DATETIME].bound_problem("soon") == "must be an ISO 8601 datetime string"
    assert CODECS[T.DATE].bound_problem("2026-01-31") is None


def test_sql_forms() -> None:
    assert CODECS[T.DECIMAL].sql_form(sa.Numeric(8, 2)) is SqlForm.ROUNDED
    assert CODECS[T.DECIMAL].sql_form(sa.Float()) is SqlForm.COLUMN
    assert CODECS[T.DATE].sql_form(sa.DateTime()) is SqlForm.DAY
    assert CODECS[T.JSON].sql_form(sa.JSON()) is SqlForm.TEXT
    assert CODECS[T.JSON].sql_form(sa.Text()) is SqlForm.COLUMN


def test_schemas_are_fresh_dicts() -> None:
    col = column(sa.Numeric(8, 2))
    first = CODECS[T.DECIMAL].schema(NO_RULES, col, for_input=True)
    first["description"] = "changed"
    assert "description" not in CODECS[T.DECIMAL].schema(NO_RULES, col, for_input=True)
    assert CODECS[T.DECIMAL].schema(NO_RULES, col, for_input=False) == {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
    }
