"""The value rules behind issue 9's items 1, 4, 5 and 11, without a server: JSON bounds on write and on
render, LIKE patterns and their GLOB translation, SQLite's date-time normalisation (run on an in-memory SQLite)
and the per-dialect SQL of ``sql.dialect``."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from dxapi import errors
from dxapi.fields import CODECS, Invalid
from dxapi.registry.model import FieldConfig
from dxapi.request.params import MAX_SORT_KEYS, like_pattern_problem, parse_filter, parse_sort
from dxapi.sql.dialect import ILike, Like, Moment, RoundedDecimal, like_to_glob, sqlite_moment
from dxapi.types import JSON_MAX_DEPTH, JSON_RENDER_MAX_DEPTH, FieldType, Unrenderable

DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect(), "mysql": mysql.dialect()}


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# --- JSON on write ------------------------------------------------------------------------------------------------


def _json_check(column_type: Any = sa.JSON) -> Any:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("doc", column_type))
    config = FieldConfig("doc", "doc", FieldType.JSON, True, True)
    return CODECS[config.type].checker(config.rules, table.c.doc, "sqlite")


@pytest.mark.parametrize(
    "value",
    [
        nested(JSON_MAX_DEPTH + 1),
        nested(JSON_MAX_DEPTH, leaf={}),
        2**63,
        -(2**63) - 1,
        {"a": [10**30]},
        Decimal("1e400"),
        Decimal("-1e400"),
        Decimal("1e-400"),
        float("nan"),
        {"a\x00": 1},
        {"\ud800": 1},
        "x\x00",
    ],
)
def test_json_that_no_backend_round_trips_is_refused(value: Any) -> None:
    for column_type in (sa.JSON, sa.Text):
        with pytest.raises(Invalid) as refused:
            _json_check(column_type)(value)
        assert refused.value.kind == "value"


def test_json_within_the_bounds_is_kept_with_fractions_as_doubles() -> None:
    value = {"deep": nested(JSON_MAX_DEPTH - 1), "n": [2**63 - 1, -(2**63)], "x": Decimal("0.1"), "z": Decimal("0")}
    assert _json_check()(value) == {**value, "x": 0.1, "z": 0.0}
    assert _json_check(sa.Text)(value).startswith('{"deep":')


# --- JSON on render -----------------------------------------------------------------------------------------------

RENDER = CODECS[FieldType.JSON].renderer()


@pytest.mark.parametrize(
    "stored",
    [
        "[" * (JSON_RENDER_MAX_DEPTH + 1) + "]" * (JSON_RENDER_MAX_DEPTH + 1),
        "{not json",
        '{"n": 1e400}',
        b"\xff",
        nested(JSON_RENDER_MAX_DEPTH + 1),
        {"n": float("inf")},
        [10**400],
    ],
)
def test_stored_json_no_answer_can_carry_is_unrenderable(stored: Any) -> None:
    assert RENDER is not None
    with pytest.raises(Unrenderable):
        RENDER(stored)


def test_stored_json_is_answered_up_to_the_render_limit() -> None:
    assert RENDER is not None
    deep = "[" * JSON_RENDER_MAX_DEPTH + "]" * JSON_RENDER_MAX_DEPTH
    assert RENDER(deep) == nested(JSON_RENDER_MAX_DEPTH - 1, leaf=[])
    assert RENDER(nested(JSON_RENDER_MAX_DEPTH)) == nested(JSON_RENDER_MAX_DEPTH)
    # A driver's own decoder keeps big integers exactly; the answer gives them as orjson reads them from text.
    assert RENDER({"n": 2**64}) == RENDER('{"n": 18446744073709551616}') == {"n": 1.8446744073709552e19}
    assert RENDER({"n": 2**64 - 1}) == {"n": 2**64 - 1}
    assert RENDER(None) is None


def test_float_filter_values_beyond_a_double_are_value_errors() -> None:
    for value in (10**400, "1e400", Decimal("1e400"), float("inf")):
        with pytest.raises(ValueError):
            CODECS[FieldType.FLOAT].parse(value, True)
    assert CODECS[FieldType.FLOAT].parse(Decimal("0.1"), True) == 0.1


# --- filter and sort grammar --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ['{"gt":1,"gt":2}', '{"gt":1,"GT":2}', '{"like":"a","LIKE":"b"}'])
def test_a_key_twice_in_an_operator_object_is_2001(value: str) -> None:
    with pytest.raises(errors.ApiError) as refused:
        parse_filter("x.price", value)
    assert refused.value.items[0].code == "2001" and "twice" in refused.value.items[0].message


def test_operator_numbers_are_exact() -> None:
    term = parse_filter("x.price", '{"gte":0.1,"lt":100000000000000000000001}')
    assert term.operations == (("gte", Decimal("0.1")), ("lt", 100000000000000000000001))


def test_sort_keys_are_bounded() -> None:
    assert len(parse_sort(",".join(["a"] * MAX_SORT_KEYS))) == MAX_SORT_KEYS
    with pytest.raises(errors.ApiError) as refused:
        parse_sort(",".join(["a"] * 2001))
    assert refused.value.items[0].code == "2019" and "2001" in refused.value.items[0].message


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("abc", False),
        ("100\\%", False),
        ("a\\_b", False),
        ("\\\\", False),
        ("%\\\\%", False),
        ("", False),
        ("abc\\", True),
        ("\\", True),
        ("a\\b", True),
        ("\\\\\\", True),
    ],
)
def test_like_pattern_backslashes(pattern: str, problem: bool) -> None:
    assert (like_pattern_problem(pattern) is not None) is problem


@pytest.mark.parametrize(
    ("pattern", "glob"),
    [
        ("%steel%", "*steel*"),
        ("a_b", "a?b"),
        ("a\\_b", "a_b"),
        ("100\\%", "100%"),
        ("\\\\x", "\\x"),
        ("star*glob?[x]", "star[*]glob[?][[]x]"),
        ("", ""),
    ],
)
def test_like_patterns_become_equivalent_globs(pattern: str, glob: str) -> None:
    assert like_to_glob(pattern) == glob
    word = {
        "%steel%": "Stainless steel",
        "a_b": "axb",
        "a\\_b": "a_b",
        "100\\%": "100%",
        "\\\\x": "\\x",
        "star*glob?[x]": "star*glob?[x]",
        "": "",
    }[pattern]
    with sqlite3.connect(":memory:") as conn:
        assert conn.execute("SELECT ? GLOB ?", (word, glob)).fetchone() == (1,)
        assert conn.execute("SELECT ? GLOB ?", (word.upper() + "!", glob)).fetchone() == (0,)


# --- per-dialect SQL ----------------------------------------------------------------------------------------------

TABLE = sa.Table(
    "t", sa.MetaData(), sa.Column("s", sa.String(20)), sa.Column("n", sa.Numeric(10, 2)), sa.Column("ts", sa.DateTime)
)


def _sql(element: Any, dialect: str) -> str:
    return str(sa.select(sa.literal(1)).where(element).compile(dialect=DIALECTS[dialect]))


@pytest.mark.parametrize(
    ("dialect", "like", "ilike"),
    [
        ("postgresql", "(t.s LIKE %(p)s)", "(t.s ILIKE %(p)s)"),
        ("sqlite", "(t.s GLOB ?)", "(t.s LIKE ? ESCAPE '\\')"),
        (
            "mysql",
            "(t.s LIKE %s AND CONVERT(t.s USING utf8mb4) COLLATE utf8mb4_bin LIKE %s)",
            "(t.s LIKE %s AND LOWER(CONVERT(t.s USING utf8mb4)) COLLATE utf8mb4_bin LIKE LOWER(%s))",
        ),
    ],
)
def test_like_and_ilike_per_dialect(dialect: str, like: str, ilike: str) -> None:
    assert like in _sql(Like(TABLE.c.s, sa.bindparam("p")), dialect)
    assert ilike in _sql(ILike(TABLE.c.s, sa.bindparam("p")), dialect)


def test_normalising_expressions_are_the_column_outside_sqlite() -> None:
    for dialect in ("postgresql", "mysql"):
        assert "WHERE t.ts = %" in _sql(Moment(TABLE.c.ts) == sa.bindparam("p"), dialect)
        assert "WHERE t.n = %" in _sql(RoundedDecimal(TABLE.c.n, 2) == 1, dialect)
    assert "round(t.n, 2)" in _sql(RoundedDecimal(TABLE.c.n, 2) == 1, "sqlite")
    assert "strftime" in _sql(Moment(TABLE.c.ts) == sa.bindparam("p"), "sqlite")


@pytest.mark.parametrize(
    ("stored", "normal"),
    [
        ("2026-12-01 18:25:32", "2026-12-01 18:25:32.000000"),
        ("2026-12-01T18:25:32", "2026-12-01 18:25:32.000000"),
        ("2026-12-01 18:25:32.5", "2026-12-01 18:25:32.500000"),
        ("2026-12-01 18:25:32.1234567", "2026-12-01 18:25:32.123456"),
        ("2026-12-01T18:25:32Z", "2026-12-01 18:25:32.000000"),
        ("2026-12-01 18:25:32.25+01:00", "2026-12-01 17:25:32.250000"),
        ("2026-12-01", "2026-12-01 00:00:00.000000"),
        ("2026-02-30", "2026-03-02 00:00:00.000000"),
        ("2026-02-30 00:00:00.000000", "2026-03-02 00:00:00.000000"),  # the SQLAlchemy form, but no real day
        ("2026-12-31 24:00:00", "2027-01-01 00:00:00.000000"),
        ("9999-12-31 24:00:00", None),
        ("9999-12-31 23:59:59.999999", "9999-12-31 23:59:59.999999"),
        ("0000-01-01", None),
        ("0001-01-01 00:30+01:00", None),
        ("now", None),
        ("garbage", None),
        (12345, None),
        (None, None),
    ],
)
def test_sqlite_moment_normalises_every_iso_form(stored: Any, normal: str | None) -> None:
    with sqlite3.connect(":memory:") as conn:
        found = conn.execute(f"SELECT {sqlite_moment('x')} FROM (SELECT ? AS x)", (stored,)).fetchone()[0]
        # Also from columns, whose affinity changes how SQLite compares (DATE and DATETIME are NUMERIC).
        conn.execute("CREATE TABLE t (d DATE, m DATETIME)")
        conn.execute("INSERT INTO t VALUES (?, ?)", (stored, stored))
        from_columns = conn.execute(f"SELECT {sqlite_moment('d')}, {sqlite_moment('m')} FROM t").fetchone()
    assert found == normal
    assert from_columns == (normal, normal)
    if normal is not None:
        assert dt.datetime.fromisoformat(normal)  # SQLAlchemy's SQLite reader takes it
