"""Reflected column types as the field codecs see them: their kind and, for integers, their width.

Fed by SQLAlchemy column types; feeds each codec's ``serves`` table (which column kinds a type fits, hence
``compatible_types``) and the integer limits of the integer and decimal codecs. Kept permissive where a backend
stores one thing as another (MariaDB has no boolean: it reflects BOOL as TINYINT; SQLite keeps anything).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql

from dxapi.fields.base import ColumnKind

# Most specific first: Float is a Numeric, Enum and Text are Strings, DateTime is no Date.
_KINDS: tuple[tuple[type[sqltypes.TypeEngine[Any]], ColumnKind], ...] = (
    (sqltypes.Boolean, ColumnKind.BOOLEAN),
    (sqltypes.Integer, ColumnKind.INTEGER),
    (sqltypes.Float, ColumnKind.FLOAT),
    (sqltypes.Numeric, ColumnKind.NUMERIC),
    (sqltypes.DateTime, ColumnKind.DATETIME),
    (sqltypes.Date, ColumnKind.DATE),
    (sqltypes.JSON, ColumnKind.JSON),
    (sqltypes.Uuid, ColumnKind.UUID),
    (sqltypes.Enum, ColumnKind.ENUM),
    (sqltypes.String, ColumnKind.TEXT),
)


def column_kind(column_type: sqltypes.TypeEngine[Any]) -> ColumnKind | None:
    """The kind of a column type; None for types no field type serves (BLOB, TIME, arrays …)."""
    return next((kind for cls, kind in _KINDS if isinstance(column_type, cls)), None)


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
