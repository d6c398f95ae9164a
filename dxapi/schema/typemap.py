"""Which API field types fit which reflected column types, and which one to suggest.

Fed by reflected SQLAlchemy column types; feeds configuration validation (a `decimal` field on a TEXT column
is refused) and the admin page's suggestions. Kept permissive where a backend stores one thing as another
(MariaDB has no boolean: it reflects BOOL as TINYINT; SQLite keeps anything anywhere).
"""

from __future__ import annotations

import re

from sqlalchemy import Column
from sqlalchemy import types as sqltypes

from dxapi.types import FieldType

_T = FieldType


def compatible_types(column_type: sqltypes.TypeEngine[object]) -> tuple[FieldType, ...]:
    """API types a column can serve, the best suggestion first.

    >>> compatible_types(sqltypes.Numeric(8, 2))
    (<FieldType.DECIMAL: 'decimal'>, <FieldType.FLOAT: 'float'>, <FieldType.STRING: 'string'>)
    """
    t = column_type
    if isinstance(t, sqltypes.Boolean):
        return (_T.BOOLEAN, _T.INTEGER)
    if isinstance(t, sqltypes.Integer):
        return (_T.INTEGER, _T.BOOLEAN, _T.DECIMAL, _T.FLOAT)
    if isinstance(t, sqltypes.Float):
        return (_T.FLOAT, _T.DECIMAL)
    if isinstance(t, sqltypes.Numeric):
        return (_T.DECIMAL, _T.FLOAT, _T.STRING)
    if isinstance(t, sqltypes.DateTime):
        return (_T.DATETIME, _T.DATE)
    if isinstance(t, sqltypes.Date):
        return (_T.DATE,)
    if isinstance(t, sqltypes.JSON):
        return (_T.JSON,)
    if isinstance(t, sqltypes.Uuid):
        return (_T.UUID, _T.STRING)
    if isinstance(t, sqltypes.Enum):
        return (_T.STRING,)
    if isinstance(t, (sqltypes.String, sqltypes.Text)):
        return (_T.STRING, _T.JSON, _T.UUID)
    return ()


def string_length(column_type: sqltypes.TypeEngine[object]) -> int | None:
    """The declared length of a VARCHAR/CHAR column (None for TEXT and non-strings)."""
    if isinstance(column_type, sqltypes.String):
        return column_type.length
    return None


# A default that reads the clock (or MariaDB's `ON UPDATE`, which reflection keeps in the default's text).
_CLOCK_DEFAULT = re.compile(
    r"current_timestamp|current_date|current_time|localtimestamp|localtime|now\s*\(|sysdate|getdate|"
    r"utc_timestamp|datetime\s*\(\s*'now'|strftime\s*\(.*'now'|\bon\s+update\b",
    re.IGNORECASE,
)


def maintained_by_database(column: Column[object]) -> bool:
    """Whether the database fills the column itself: a generated column, or a date/time column whose default
    reads the clock or that has an on-update clause (``created_at``, ``updated_at``). A client should not
    write such a column, so the admin page suggests it as neither creatable nor editable.

    >>> from sqlalchemy import DateTime, text
    >>> maintained_by_database(Column("updated_at", DateTime, server_default=text("CURRENT_TIMESTAMP")))
    True
    """
    if column.computed is not None:
        return True
    if not isinstance(column.type, (sqltypes.DateTime, sqltypes.Date, sqltypes.Time)):
        return False
    if column.server_onupdate is not None:
        return True
    default = column.server_default
    text = str(getattr(default, "arg", "")) if default is not None else ""
    return bool(_CLOCK_DEFAULT.search(text))
