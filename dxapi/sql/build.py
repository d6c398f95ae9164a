"""SQL for read plans, built only from reflected ``Column`` objects and bound parameters.

The same plan shape always yields the same statement shape, so SQLAlchemy's compiled-statement cache hits on
every repeat of a request pattern; values (including limit and offset) are bind parameters.

    ReadPlan(products, price >= 10, order -price, limit 100)
    → SELECT … FROM shop_product WHERE price >= :p ORDER BY price DESC, id_product LIMIT :l OFFSET :o
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Delete,
    Insert,
    Numeric,
    Select,
    Update,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from dxapi.plan.types import Condition, IncludePlan, ReadPlan
from dxapi.registry.snapshot import EntitySnapshot
from dxapi.types import FieldType


def build_condition(condition: Condition) -> ColumnElement[bool]:
    column: ColumnElement[Any] = condition.field.column
    value = condition.value
    if condition.field.type is FieldType.DECIMAL and condition.operator != "isNull":
        # Bound with the column's NUMERIC(p, s) the driver would round 563.799 to 563.80 before comparing.
        value = _exact_decimal(value)
    clause: ColumnElement[bool]
    match condition.operator:
        case "eq":
            clause = column == value
        case "ne":
            # NULL is "not equal" to any value for an API user; SQL's three-valued logic would drop it.
            clause = (column != value) | column.is_(None)
        case "in":
            clause = column.in_(value)
        case "gt":
            clause = column > value
        case "gte":
            clause = column >= value
        case "lt":
            clause = column < value
        case "lte":
            clause = column <= value
        case "like":
            clause = column.like(value)
        case "isNull":
            clause = column.is_(None) if value else column.is_not(None)
        case _:
            raise AssertionError(f"operator {condition.operator} reached SQL unplanned")
    return clause


def _exact_decimal(value: Any) -> Any:
    if isinstance(value, tuple):
        return bindparam(None, list(value), type_=Numeric(asdecimal=True), expanding=True)
    return bindparam(None, value, type_=Numeric(asdecimal=True))


def build_read(plan: ReadPlan) -> Select[Any]:
    entity = plan.entity
    statement = select(*entity.columns)
    if plan.conditions:
        statement = statement.where(and_(*(build_condition(c) for c in plan.conditions)))
    if plan.single:
        return statement.limit(2)  # two, so a non-unique identifier cannot silently answer one of several
    order = [key.field.column.desc() if key.descending else key.field.column.asc() for key in plan.order]
    return statement.order_by(*order).limit(plan.limit).offset(plan.offset)


def build_children(include: IncludePlan, parent_keys: Sequence[Any]) -> Select[Any]:
    """All children of one relation level for the given parent key values, in identifier order."""
    child: EntitySnapshot = include.entity
    key_column = include.relation.child_field.column
    return (
        select(*child.columns)
        .where(key_column.in_(parent_keys))
        .order_by(key_column, child.identifier.column)
    )


# --- writes -------------------------------------------------------------------------------------------------

def build_insert(entity: EntitySnapshot) -> Insert:
    """Multi-row capable INSERT returning every configured column, rows in parameter order."""
    return insert(entity.table).returning(*entity.columns, sort_by_parameter_order=True)


def build_update(entity: EntitySnapshot, columns: Sequence[str]) -> Update:
    """``UPDATE … SET c = :v0, … WHERE identifier = :key`` for executemany; bind names are positional so
    column names with spaces or quotes never become parameter names."""
    table = entity.table
    values: dict[Column[Any], Any] = {table.c[name]: bindparam(f"v{i}") for i, name in enumerate(columns)}
    return update(entity.table).where(entity.identifier.column == bindparam("key")).values(values)


def build_select_by_keys(entity: EntitySnapshot, keys: Sequence[Any]) -> Select[Any]:
    return select(*entity.columns).where(entity.identifier.column.in_(keys))


def build_existing(entity: EntitySnapshot, keys: Sequence[Any], extra: Column[Any] | None) -> Select[Any]:
    """Identifiers (and, for nested children, their parent-key column) of the rows that exist."""
    columns = [entity.identifier.column] + ([extra] if extra is not None else [])
    return select(*columns).where(entity.identifier.column.in_(keys))


def build_delete(entity: EntitySnapshot, keys: Sequence[Any]) -> Delete:
    return delete(entity.table).where(entity.identifier.column.in_(keys))


def build_matching_keys(entity: EntitySnapshot, conditions: Sequence[Condition], limit: int) -> Select[Any]:
    statement = select(entity.identifier.column).where(and_(*(build_condition(c) for c in conditions)))
    return statement.order_by(entity.identifier.column).limit(limit)
