"""The database's clock as a column holds it: the SQL value of a field dxapi maintains (``autoValue``).

Fed by the stamps of an entity snapshot (``registry.snapshot.Stamp``); feeds the INSERT and UPDATE statements of
a write (``execute.statements``: in the statement, the same for every row, whose values are the parameters). The
time is always the database's, never a worker's (workers on several hosts would disagree), written in the form
the field codecs read back on that backend (``fields.moments``, ``sql.dialect``):

* PostgreSQL: ``now()``, the transaction's start, so every row of one request gets the same instant; a column
  without time zone holds naive UTC, as the codecs bind it (``timezone('UTC', now())``).
* MariaDB: ``UTC_TIMESTAMP(fsp)`` with the column's own fraction digits (a plain ``DATETIME`` keeps whole seconds);
  the time of the statement.
* SQLite: text in SQLAlchemy's form, ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC (SQLite's clock has milliseconds), the
  form :class:`dxapi.sql.dialect.Moment` reads fastest; a date as ``YYYY-MM-DD``.

A ``date`` field gets the current UTC day (at midnight, in a date-time column).

    Now(products.c.updated_at)  → timezone('UTC', now())                        (PostgreSQL, TIMESTAMP)
                                → UTC_TIMESTAMP(6)                              (MariaDB, DATETIME(6))
                                → (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')  (SQLite)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column
from sqlalchemy import types as sqltypes
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from dxapi.registry.snapshot import Stamp

_PG_UTC = "timezone('UTC', now())"


class Now(FunctionElement[Any]):
    """The current moment, for a date-time column (the column is an argument only for its type)."""

    name = "dx_now"
    inherit_cache = True

    def __init__(self, column: Column[Any]) -> None:
        super().__init__(column)
        self.type = column.type


class Today(FunctionElement[Any]):
    """The current UTC day, for a date column or (at midnight) a date-time column."""

    name = "dx_today"
    inherit_cache = True

    def __init__(self, column: Column[Any]) -> None:
        super().__init__(column)
        self.type = column.type


def stamp_values(stamps: Sequence[Stamp]) -> dict[Column[Any], FunctionElement[Any]]:
    """The ``values()`` of a statement that stamps these columns: each set to the clock, in SQL."""
    return {s.column: Today(s.column) if s.day else Now(s.column) for s in stamps}


def _column_type(element: FunctionElement[Any]) -> sqltypes.TypeEngine[Any]:
    column: Any = next(iter(element.clauses))
    column_type: sqltypes.TypeEngine[Any] = column.type
    return column_type


def _holds_time(element: FunctionElement[Any]) -> bool:
    return isinstance(_column_type(element), sqltypes.DateTime)


def _aware(element: FunctionElement[Any]) -> bool:
    return _holds_time(element) and bool(getattr(_column_type(element), "timezone", False))


@compiles(Now)
def _now(element: Now, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(Today)
def _today(element: Today, compiler: SQLCompiler, **kw: Any) -> str:
    return "CURRENT_DATE"


@compiles(Now, "postgresql")
def _now_postgresql(element: Now, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()" if _aware(element) else _PG_UTC


@compiles(Today, "postgresql")
def _today_postgresql(element: Today, compiler: SQLCompiler, **kw: Any) -> str:
    if not _holds_time(element):
        return f"CAST({_PG_UTC} AS DATE)"
    midnight = f"date_trunc('day', {_PG_UTC})"
    return f"timezone('UTC', {midnight})" if _aware(element) else midnight


@compiles(Now, "mysql")
def _now_mysql(element: Now, compiler: SQLCompiler, **kw: Any) -> str:
    # dxapi's sessions run in UTC (db.py), so a TIMESTAMP column takes the UTC value as it is.
    digits = int(getattr(_column_type(element), "fsp", None) or 0)
    return f"UTC_TIMESTAMP({digits})" if digits else "UTC_TIMESTAMP()"


@compiles(Today, "mysql")
def _today_mysql(element: Today, compiler: SQLCompiler, **kw: Any) -> str:
    return "UTC_DATE()"  # a DATETIME column stores it at midnight


@compiles(Now, "sqlite")
def _now_sqlite(element: Now, compiler: SQLCompiler, **kw: Any) -> str:
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


@compiles(Today, "sqlite")
def _today_sqlite(element: Today, compiler: SQLCompiler, **kw: Any) -> str:
    return "(date('now') || ' 00:00:00.000000')" if _holds_time(element) else "date('now')"
