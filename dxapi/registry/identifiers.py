"""Which columns can be an entity's identifier, and why another cannot.

The identifier names the row of ``/{alias}/{id}``, of PATCH, PUT and DELETE, and ends every sort order so
pages never skip or repeat a row; it must therefore be a column that can hold each value at most once: the
single-column primary key, or a NOT NULL column with a single-column UNIQUE constraint or full unique index.
Composite keys are not supported as identifiers, and views (which declare no keys) cannot be configured.

Fed by reflected tables (``schema.reflect``); feeds ``checks.check_entities`` and the admin edit page (the
identifier choices).
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Table, UniqueConstraint

from dxapi.schema.reflect import is_view

_IDENTIFIER_RULE = "The identifier must be the primary key or a single-column UNIQUE NOT NULL key"


def identifier_candidates(table: Table) -> list[str]:
    """The columns that can be the identifier, in table order (see the module docstring)."""
    if is_view(table):
        return []
    primary = list(table.primary_key.columns)
    unique, _restricted = _unique_columns(table)
    return [
        column.name
        for column in table.columns
        if (len(primary) == 1 and column is primary[0]) or (column.name in unique and column.nullable is False)
    ]


def identifier_problem(table: Table, column: str) -> str | None:
    """Why ``column`` cannot be the identifier of ``table`` (None: it can), naming the columns that can."""
    eligible = identifier_candidates(table)
    if column in eligible:
        return None
    primary = [c.name for c in table.primary_key.columns]
    unique, restricted = _unique_columns(table)
    if is_view(table):
        reason = f"`{table.name}` is a view, and views declare no keys"
    elif column in primary:
        reason = (
            f"it is part of the composite primary key ({', '.join(primary)}), and composite keys are not "
            "supported as identifiers"
        )
    elif column in unique:
        reason = "its UNIQUE key allows NULL"
    elif column in restricted:
        reason = f"its UNIQUE index `{restricted[column]}` covers only some rows or a prefix of the values"
    else:
        reason = "no primary key, UNIQUE constraint or unique index covers exactly this column"
    return (
        f"identifier `{column}` is not a unique key of `{table.name}`: {reason}. {_IDENTIFIER_RULE}; "
        f"eligible here: {', '.join(eligible) or 'none'}"
    )


def _unique_columns(table: Table) -> tuple[set[str], dict[str, str]]:
    """Columns that a single-column UNIQUE constraint or unique index covers; and, by column, the unique
    indexes that do not make their column unique (partial, or over a prefix of the values)."""
    unique: set[str] = set()
    restricted: dict[str, str] = {}
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) == 1:
            unique.add(next(iter(constraint.columns)).name)
    for index in table.indexes:
        expressions = list(index.expressions)
        if not index.unique or len(expressions) != 1 or not isinstance(expressions[0], Column):
            continue
        if _covers_part(index):
            restricted.setdefault(expressions[0].name, str(index.name))
        else:
            unique.add(expressions[0].name)
    return unique, restricted


def _covers_part(index: Index) -> bool:
    """A partial index (``postgresql_where``, ``sqlite_where``) or one over a prefix (``mysql_length``)."""
    return any(
        value is not None and not (isinstance(value, (dict, list, tuple, str)) and not value)  # a clause has no bool
        for key, value in index.dialect_kwargs.items()
        if key.endswith(("_where", "_length"))
    )
