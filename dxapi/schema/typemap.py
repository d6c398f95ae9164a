"""Column facts the configuration checks and the admin page ask about: the declared length of a string column,
and whether the database fills a column itself. Which API types fit which column types is the codecs' (each
codec's ``serves`` table); ``compatible_types`` is re-exported from ``dxapi.fields`` for the callers here.

Fed by reflected SQLAlchemy columns; feeds ``registry.checks`` and the admin page's suggestions.
"""

from __future__ import annotations

import re

from sqlalchemy import Column
from sqlalchemy import types as sqltypes

from dxapi.fields import compatible_types

__all__ = ["compatible_types", "maintained_by_database", "string_length"]


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
