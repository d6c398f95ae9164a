"""Where backends differ in what a comparison means, one SQL element per difference, compiled per dialect.

A filter must match exactly the rows whose answered value satisfies it, on every backend. Plans and statements
stay dialect-neutral: the elements below render the same statement object differently for SQLite, PostgreSQL
and MariaDB at compile time (``sqlalchemy.ext.compiler``), so a statement built once per request shape still
compiles for whichever engine runs it.

* :class:`Moment` — SQLite keeps date-times as text in whatever form the writer chose: SQLAlchemy writes
  ``2026-12-01 18:25:32.000000``, ``CURRENT_TIMESTAMP`` writes ``2026-12-01 18:25:32``, other tools
  ``2026-12-01T18:25:32Z``. Text comparison of mixed forms is wrong (``'…32' < '…32.000000'``), so on SQLite
  the value is normalised in SQL to SQLAlchemy's form (UTC, six fraction digits) — and *read* through the same
  expression, so what a client is answered and what its filter compares are one value. Text that is no date
  SQLite understands reads as NULL instead of failing the whole read.
* :class:`Day` — the same for dates, and the calendar day of a date-time column served as an API ``date``.
* :class:`RoundedDecimal` — SQLite stores NUMERIC as a double with whatever digits its writer gave; the API
  answers it rounded to the column's scale, so SQLite compares (and reads) that rounded value.
* :class:`PerBackend` — a keyset predicate (``page[cursor]``) must agree with ``ORDER BY``, and where NULL sorts
  differs: before every value in ascending order on SQLite and MariaDB, after it on PostgreSQL (MariaDB has no
  ``NULLS FIRST``/``LAST`` to make them agree). The predicate is built once per backend and the compiling dialect
  picks its own (:func:`nulls_sort_low`, :func:`may_be_null`).
* :class:`Like` — ``like`` is case-sensitive and ``ilike`` case-insensitive on every backend, with one escape
  syntax (``request.params.like_pattern_problem``): PostgreSQL has LIKE/ILIKE; MariaDB compares under a binary
  collation (its collations are case-insensitive); SQLite's LIKE ignores ASCII case, so ``like`` becomes GLOB
  there (the pattern is translated when it is bound, :class:`LikePattern`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, ColumnElement, String, TypeDecorator, literal_column
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

# Julian days of 0001-01-01 00:00 and of 9999-12-31 23:59:59.999: outside them Python has no datetime.
_FIRST_DAY, _LAST_MOMENT = 1721425.5, 5373484.49999999
_ISO_DATE_START = "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'"
_SECONDS_FORM = "'[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-5][0-9]'"
_SQLALCHEMY_FORM = _SECONDS_FORM[:-1] + ".[0-9][0-9][0-9][0-9][0-9][0-9]'"


class Moment(FunctionElement[Any]):
    """A date-time column's value as the API answers it (normalised text on SQLite, the column elsewhere)."""

    name = "dx_moment"
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = column.type


class Day(FunctionElement[Any]):
    """A date, or the calendar day (UTC) of a date-time, as the API answers an API ``date`` field."""

    name = "dx_day"
    inherit_cache = True
    type = sqltypes.Date()


class RoundedDecimal(FunctionElement[Any]):
    """A NUMERIC column at its scale (rounded by SQLite, exact elsewhere); ``Numeric`` result type kept."""

    name = "dx_rounded"
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], scale: int) -> None:
        # The scale is a clause, not an attribute: it is part of the statement cache key that way.
        super().__init__(column, literal_column(str(int(scale))))
        self.type = column.type


class Like(FunctionElement[Any]):
    """``column LIKE pattern``, case-sensitive on every backend."""

    name = "dx_like"
    inherit_cache = True
    type = sqltypes.Boolean()
    _is_implicitly_boolean = True  # a comparison: no `= 1` appended where a backend lacks booleans


class ILike(FunctionElement[Any]):
    """``column ILIKE pattern``: case-insensitive on every backend (SQLite and its LIKE fold ASCII only)."""

    name = "dx_ilike"
    inherit_cache = True
    type = sqltypes.Boolean()
    _is_implicitly_boolean = True  # a comparison: no `= 1` appended where a backend lacks booleans


class LikePattern(TypeDecorator[str]):
    """The bind type of a case-sensitive pattern: the LIKE syntax everywhere, translated to GLOB on SQLite."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and dialect.name == "sqlite":
            return like_to_glob(value)
        return value


class PerBackend(FunctionElement[Any]):
    """A boolean clause in one form per backend, in ``BACKENDS`` order; compiled as the compiling dialect's form
    (another dialect gets MariaDB's: NULL sorts low there, as on most databases)."""

    name = "dx_per_backend"
    inherit_cache = True
    type = sqltypes.Boolean()
    _is_implicitly_boolean = True  # a comparison: no `= 1` appended where a backend lacks booleans


BACKENDS = ("sqlite", "mysql", "postgresql")


def nulls_sort_low(backend: str) -> bool:
    """Whether NULL comes before every value in ascending order (and after it in descending order)."""
    return backend != "postgresql"


def may_be_null(value: ColumnElement[Any], column: Column[Any], backend: str) -> bool:
    """Whether ``value``, the API value of ``column`` (``sql.build.field_value``), can be NULL: a nullable column,
    or on SQLite a normalised form, which reads text that is no date or number as NULL."""
    return bool(column.nullable) or (backend == "sqlite" and value is not column)


# --- patterns -----------------------------------------------------------------------------------------------


def like_to_glob(pattern: str) -> str:
    """A valid LIKE pattern (``request.params.like_pattern_problem``) as the SQLite GLOB pattern matching the
    same: ``%`` → ``*``, ``_`` → ``?``, GLOB's own ``*?[`` and escaped characters as one-character sets."""
    out: list[str] = []
    escaped = False
    for character in pattern:
        if escaped:
            out.append(_glob_literal(character))
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "%":
            out.append("*")
        elif character == "_":
            out.append("?")
        else:
            out.append(_glob_literal(character))
    return "".join(out)


def _glob_literal(character: str) -> str:
    return f"[{character}]" if character in "*?[" else character


# --- compilation --------------------------------------------------------------------------------------------


def _arguments(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses]


def _column_of(element: FunctionElement[Any]) -> Any:
    return next(iter(element.clauses))


@compiles(Moment)
def _moment(element: Moment, compiler: SQLCompiler, **kw: Any) -> str:
    return _arguments(element, compiler, **kw)[0]


@compiles(Moment, "sqlite")
def _moment_sqlite(element: Moment, compiler: SQLCompiler, **kw: Any) -> str:
    return sqlite_moment(_arguments(element, compiler, **kw)[0])


def sqlite_moment(x: str) -> str:
    """SQL turning the SQLite value ``x`` into ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC) or NULL.

    SQLite's own date functions read every ISO 8601 form (``T`` or space, ``Z`` or an offset, which they turn
    into UTC) and normalise impossible days (``02-30``, hour 24), but keep only milliseconds: the fraction is
    cut out first and put back with six digits. The two forms nearly every row has — SQLAlchemy's and
    ``CURRENT_TIMESTAMP``'s — take a cheaper path once their day is known to be a real one.
    """
    # substr(), not the column: a comparison with a DATE column would apply its numeric affinity to '0000'.
    real_day = f"date({x}, '+0 days') = substr({x}, 1, 10) AND substr({x}, 1, 4) <> '0000'"
    rest = f"substr({x}, 21)"
    digits = f"(length({rest}) - length(ltrim({rest}, '0123456789')))"
    has_fraction = f"substr({x}, 20, 1) = '.'"
    whole = f"(CASE WHEN {has_fraction} THEN substr({x}, 1, 19) || substr({x}, 21 + {digits}) ELSE {x} END)"
    fraction = f"(CASE WHEN {has_fraction} THEN substr(substr({x}, 21, {digits}) || '000000', 1, 6) ELSE '000000' END)"
    return (
        f"(CASE WHEN {x} GLOB {_SQLALCHEMY_FORM} AND {real_day} THEN {x} "
        f"WHEN {x} GLOB {_SECONDS_FORM} AND {real_day} THEN {x} || '.000000' "
        f"WHEN {x} GLOB {_ISO_DATE_START} "
        f"AND julianday({whole}, '+0 seconds') BETWEEN {_FIRST_DAY} AND {_LAST_MOMENT} "
        f"THEN strftime('%Y-%m-%d %H:%M:%S', {whole}, '+0 seconds') || '.' || {fraction} END)"
    )


@compiles(Day)
def _day(element: Day, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = _arguments(element, compiler, **kw)
    column_type = _column_of(element).type
    if not isinstance(column_type, sqltypes.DateTime):
        return column
    if getattr(column_type, "timezone", False) and compiler.dialect.name == "postgresql":
        return f"CAST(timezone('UTC', {column}) AS DATE)"  # the UTC day, as the answered date-time shows it
    return f"CAST({column} AS DATE)"


@compiles(Day, "sqlite")
def _day_sqlite(element: Day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"substr({sqlite_moment(_arguments(element, compiler, **kw)[0])}, 1, 10)"


@compiles(RoundedDecimal)
def _rounded(element: RoundedDecimal, compiler: SQLCompiler, **kw: Any) -> str:
    return _arguments(element, compiler, **kw)[0]


@compiles(RoundedDecimal, "sqlite")
def _rounded_sqlite(element: RoundedDecimal, compiler: SQLCompiler, **kw: Any) -> str:
    column, scale = _arguments(element, compiler, **kw)
    # Text that is no number reads as NULL (SQLite's round() would make it 0).
    return f"(CASE typeof({column}) WHEN 'integer' THEN {column} WHEN 'real' THEN round({column}, {scale}) END)"


@compiles(PerBackend)
def _per_backend(element: PerBackend, compiler: SQLCompiler, **kw: Any) -> str:
    name = compiler.dialect.name
    form = list(element.clauses)[BACKENDS.index(name if name in BACKENDS else "mysql")]
    return f"({compiler.process(form, **kw)})"


def _text(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    column, pattern = _arguments(element, compiler, **kw)
    if not isinstance(_column_of(element).type, sqltypes.String):
        column = f"CAST({column} AS TEXT)"  # a string field on a numeric or uuid column
    return column, pattern


@compiles(Like)
def _like(element: Like, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = _text(element, compiler, **kw)
    return f"({column} LIKE {pattern})"  # PostgreSQL: case-sensitive; backslash is the default escape


@compiles(ILike)
def _ilike(element: ILike, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = _text(element, compiler, **kw)
    return f"({column} ILIKE {pattern})"


@compiles(Like, "sqlite")
def _like_sqlite(element: Like, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = _arguments(element, compiler, **kw)
    return f"({column} GLOB {pattern})"


@compiles(ILike, "sqlite")
def _ilike_sqlite(element: ILike, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = _arguments(element, compiler, **kw)
    return f"({column} LIKE {pattern} ESCAPE '\\')"


# MariaDB: the column's own (case-insensitive) collation first — it matches a superset and can use an index for a
# prefix — then the exact test. CONVERT makes the binary utf8mb4 collation apply to any character set.


@compiles(Like, "mysql")
def _like_mysql(element: Like, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = _arguments(element, compiler, **kw)
    again = _arguments(element, compiler, **kw)[1]  # compiled twice: positional drivers get the value twice
    return f"({column} LIKE {pattern} AND CONVERT({column} USING utf8mb4) COLLATE utf8mb4_bin LIKE {again})"


@compiles(ILike, "mysql")
def _ilike_mysql(element: ILike, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = _arguments(element, compiler, **kw)
    again = _arguments(element, compiler, **kw)[1]
    # Lower-cased under the binary collation, not only a _ci one: those also equate accents (`e`, `é`).
    return (
        f"({column} LIKE {pattern} AND LOWER(CONVERT({column} USING utf8mb4)) COLLATE utf8mb4_bin LIKE LOWER({again}))"
    )


def effective_scale(column: Column[Any]) -> int:
    """The digits after the point SQLAlchemy reads a NUMERIC column with (its scale, else 10)."""
    scale = getattr(column.type, "_effective_decimal_return_scale", None)
    return scale if isinstance(scale, int) else 10
