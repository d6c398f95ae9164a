"""SQL for read plans, built only from reflected ``Column`` objects and bound parameters.

The same plan shape always yields the same statement shape, so SQLAlchemy's compiled-statement cache hits on
every repeat of a request pattern; values (including limit and offset) are bind parameters.

    ReadPlan(products, price >= 10, order -price, limit 100)
    → SELECT … FROM shop_product WHERE price >= :p ORDER BY price DESC, id_product LIMIT :l OFFSET :o

A keyset page (``page[cursor]``) has no OFFSET: the rows after the cursor are a WHERE predicate on the order
keys, which compares each key in the form it is ordered by, so a deep page costs what the first one does:

    ReadPlan(products, order updatedAt, cursor after (t, 42), limit 50)
    → SELECT … WHERE updated_at >= :k0 AND (updated_at, id_product) > (:k0, :k1)
      ORDER BY updated_at, id_product LIMIT :limit                                  (:limit = 51, one to spare)

``fields[...]`` narrows the select list to the plan's ``fields`` (``ReadPlan.fields``, ``IncludePlan.fields``);
``Prefer: count=…`` adds ``SELECT count(*)`` of the same conditions, or on PostgreSQL and MariaDB first the
planner's row estimate of them (:func:`build_estimate`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    BindParameter,
    Column,
    ColumnElement,
    Delete,
    Executable,
    Insert,
    Select,
    String,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal_column,
    not_,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import FromClause
from sqlalchemy.sql.visitors import InternalTraversal

from dxapi.fields import SqlForm
from dxapi.plan.types import Condition, Group, IncludePlan, OrderKey, Predicate, ReadPlan
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot
from dxapi.sql.dialect import (
    BACKENDS,
    Day,
    ILike,
    Like,
    LikePattern,
    Moment,
    PerBackend,
    RoundedDecimal,
    effective_scale,
    may_be_null,
    nulls_sort_low,
)


def field_value(field: FieldSnapshot) -> ColumnElement[Any]:
    """The SQL value of a field as the API answers it: what reads select and filters compare.

    Usually the column itself; where a backend stores one value in several forms (SQLite's date-time text,
    its NUMERIC doubles) the normalising expression of ``sql.dialect``, so a value read back and used as a
    filter always matches its row.
    """
    column = field.column
    match field.codec.sql_form(column.type):
        case SqlForm.MOMENT:
            return Moment(column)
        case SqlForm.DAY:
            return Day(column)
        case SqlForm.ROUNDED:
            return RoundedDecimal(column, effective_scale(column))
        case SqlForm.TEXT:
            # Read as text, decoded by the field's renderer (a JSON column: one row of text that is no JSON
            # would otherwise fail the driver's decoder, and with it the whole read).
            return type_coerce(column, Text())
    return column


def selected(entity: EntitySnapshot, fields: Sequence[FieldSnapshot] | None = None) -> list[ColumnElement[Any]]:
    """The select list of an entity's rows, in ``entity.columns`` order (labelled with the column names);
    ``fields``: only these (``fields[...]``, already in entity order)."""
    out: list[ColumnElement[Any]] = []
    for field in entity.fields if fields is None else fields:
        value = field_value(field)
        out.append(value if value is field.column else value.label(field.column.name))
    return out


def _order_key(field: FieldSnapshot, descending: bool, *, keyset: bool = False) -> ColumnElement[Any]:
    value = field_value(field)
    if isinstance(value, RoundedDecimal) and not keyset:
        value = field.column  # rounding keeps the order of decimals, so their index stays usable
    # A keyset page orders by exactly what its predicate compares: SQLite's 1.004 and 1.001 are both 1.00 there,
    # and then it is the identifier that orders them.
    return value.desc() if descending else value.asc()


def build_condition(condition: Condition, name: str) -> ColumnElement[bool]:
    """One filter as SQL; its value(s) are bind parameters named ``name`` (``name_0``, ``name_1`` … for
    ``in``), so statements can be cached by shape and filled by :func:`read_parameters`."""
    field = condition.field
    column: ColumnElement[Any] = field_value(field)
    bind_type = field.codec.bind_type(field.column.type)

    def value(suffix: str = "") -> Any:
        return bindparam(name + suffix, type_=bind_type)

    clause: ColumnElement[bool]
    match condition.operator:
        case "eq":
            clause = column == value()
        case "ne":
            # NULL is "not equal" to any value for an API user; SQL's three-valued logic would drop it.
            clause = (column != value()) | column.is_(None)
        case "in" | "nin":
            clause = _membership(column, condition.operator, [value(f"_{i}") for i in range(len(condition.value))])
        case "gt":
            clause = column > value()
        case "gte":
            clause = column >= value()
        case "lt":
            clause = column < value()
        case "lte":
            clause = column <= value()
        case "like":
            clause = Like(column, bindparam(name, type_=LikePattern()))
        case "ilike":
            clause = ILike(column, bindparam(name, type_=String()))
        case "isNull":
            clause = column.is_(None) if condition.value else column.is_not(None)
        case _:
            raise AssertionError(f"operator {condition.operator} reached SQL unplanned")
    return clause


def build_predicate(
    predicate: Predicate, names: Iterator[str], source: FromClause | None = None
) -> ColumnElement[bool]:
    """A condition, group or relation filter as SQL, its bind parameters named by ``names`` in the order
    :func:`predicate_parameters` gives their values. ``source``: where the fields' columns come from, when not
    their own table (the alias of a relation filter's subquery).

        Exists(productStocks, stocks, (quantity > 0,)) on products
        → EXISTS (SELECT 1 FROM shop_stock AS shop_stock_1
                  WHERE shop_stock_1.fk_product = shop_product.id_product AND shop_stock_1.quantity > :p0)
    """
    if isinstance(predicate, Condition):
        if source is not None:
            # The alias's column stands for the table's own, with its type: a Column in all but its class.
            column: Any = source.c[predicate.field.column.name]
            predicate = dataclasses.replace(predicate, field=dataclasses.replace(predicate.field, column=column))
        return build_condition(predicate, next(names))
    if isinstance(predicate, Group):
        parts = [build_predicate(item, names, source) for item in predicate.items]
        if predicate.operator == "or":
            return or_(*parts)
        combined = and_(*parts)
        if predicate.operator == "and":
            return combined
        # The exact complement: a row whose comparison is unknown (a NULL) matched nothing, so `not` matches it.
        return not_(func.coalesce(combined, false()))
    relation = predicate.relation
    parent = relation.parent_field.column if source is None else source.c[relation.parent_field.column.name]
    # Always an alias: a relation of an entity to itself must not be correlated with the outer row's table.
    related = predicate.entity.table.alias()
    link = related.c[relation.child_field.column.name] == parent
    inner = [build_predicate(item, names, related) for item in predicate.items]
    # A literal column, not a bound 1: every bind of a cached statement is a parameter the plan fills.
    return select(literal_column("1")).select_from(related).where(link, *inner).exists()


def predicate_shape(predicate: Predicate) -> tuple[Any, ...]:
    """What decides the SQL text of :func:`build_predicate` for ``predicate`` (values are bound)."""
    if isinstance(predicate, Condition):
        c = predicate
        sized = c.operator in ("in", "nin")
        return (c.field.name, c.operator, len(c.value) if sized else c.value if c.operator == "isNull" else 0)
    if isinstance(predicate, Group):
        return ("group", predicate.operator, tuple(predicate_shape(item) for item in predicate.items))
    return ("exists", predicate.relation.name, tuple(predicate_shape(item) for item in predicate.items))


def predicate_parameters(predicates: Sequence[Predicate], prefix: str = "p") -> dict[str, Any]:
    """The bind values of ``predicates`` built with the names ``{prefix}0``, ``{prefix}1`` … of
    :func:`parameter_names`, in the same (depth-first) order :func:`build_predicate` takes them."""
    values: dict[str, Any] = {}
    for i, condition in enumerate(_comparisons(predicates)):
        name = f"{prefix}{i}"
        if condition.operator in ("in", "nin"):
            values.update({f"{name}_{j}": item for j, item in enumerate(condition.value)})
        elif condition.operator != "isNull":
            values[name] = condition.value
    return values


def parameter_names(prefix: str = "p") -> Iterator[str]:
    return (f"{prefix}{i}" for i in itertools.count())


def _comparisons(predicates: Sequence[Predicate]) -> Iterator[Condition]:
    for predicate in predicates:
        if isinstance(predicate, Condition):
            yield predicate
        else:
            yield from _comparisons(predicate.items)


def _membership(column: ColumnElement[Any], operator: str, values: list[Any]) -> ColumnElement[bool]:
    if operator == "in":
        return column.in_(values) if values else false()  # IN () is no valid SQL anywhere
    # As `ne`: NULL is in no list, so it is "not in" every one (SQL's NOT IN would drop it).
    return (column.not_in(values) | column.is_(None)) if values else true()


def read_shape(plan: ReadPlan) -> tuple[Any, ...]:
    """Everything that decides the SQL text of :func:`build_read`, and nothing else (values are bound).

    Two plans with equal shapes share one statement: the cache key of the compiled-statement cache.
    """
    order = tuple((k.field.name, k.descending) for k in plan.order)
    return (plan.single, conditions_shape(plan.conditions), order, _cursor_shape(plan), fields_shape(plan.fields))


def conditions_shape(conditions: Sequence[Predicate]) -> tuple[Any, ...]:
    """What decides the SQL text of the conditions (their WHERE clause): not their values, which are bound."""
    return tuple(predicate_shape(c) for c in conditions)


def fields_shape(fields: Sequence[FieldSnapshot] | None) -> tuple[str, ...] | None:
    return None if fields is None else tuple(f.name for f in fields)


def _cursor_shape(plan: ReadPlan) -> tuple[bool, ...] | str | None:
    """None: offset paging; "first": a keyset list's first page; else which of the cursor's values are NULL."""
    if plan.cursor is None:
        return None
    if plan.cursor.after is None:
        return "first"
    return tuple(value is None for value in plan.cursor.after)


def condition_parameters(conditions: Sequence[Predicate]) -> dict[str, Any]:
    """The bind values of conditions built with names ``p0``, ``p1`` … by :func:`build_predicate`."""
    return predicate_parameters(conditions)


def read_parameters(plan: ReadPlan) -> dict[str, Any]:
    """The bind values of :func:`build_read` for this plan."""
    values = condition_parameters(plan.conditions)
    if plan.single:
        values["limit"] = 2
    elif plan.cursor is not None:
        values["limit"] = plan.limit + 1  # one row more than the page: whether a next page exists, without a COUNT
        after = plan.cursor.after or ()
        values.update({f"k{i}": value for i, value in enumerate(after) if value is not None})
    else:
        values["limit"] = plan.limit
        values["offset"] = plan.offset
    return values


def build_read(plan: ReadPlan) -> Select[Any]:
    entity = plan.entity
    statement = select(*selected(entity, plan.fields))
    if plan.conditions:
        names = parameter_names()
        statement = statement.where(and_(*(build_predicate(c, names) for c in plan.conditions)))
    if plan.single:
        # Two rows, so a non-unique identifier cannot silently answer one of several (read_parameters).
        return statement.limit(bindparam("limit", type_=BigInteger()))
    if plan.cursor is not None:
        return _keyset_page(statement, plan)
    order = [_order_key(key.field, key.descending) for key in plan.order]
    return (
        statement.order_by(*order)
        .limit(bindparam("limit", type_=BigInteger()))
        .offset(bindparam("offset", type_=BigInteger()))
    )


def export_shape(plan: ReadPlan) -> tuple[Any, ...]:
    """The cache key of :func:`build_export`: the read's shape, apart from the page's."""
    return ("export", read_shape(plan))


def build_export(plan: ReadPlan) -> Select[Any]:
    """Every row the list read would page through, in its order: :func:`build_read` without LIMIT and OFFSET
    (its ``limit``/``offset`` bind values are then simply not used).

        ReadPlan(products, price >= 10, order -price)
        → SELECT … FROM shop_product WHERE price >= :p0 ORDER BY price DESC, id_product
    """
    return build_read(plan).limit(None).offset(None)


def _keyset_page(statement: Select[Any], plan: ReadPlan) -> Select[Any]:
    assert plan.cursor is not None
    if plan.cursor.after is not None:
        statement = statement.where(build_keyset(plan.order, plan.cursor.after))
    order = [_order_key(key.field, key.descending, keyset=True) for key in plan.order]
    return statement.order_by(*order).limit(bindparam("limit", type_=BigInteger()))


def build_keyset(order: Sequence[OrderKey], after: Sequence[Any]) -> ColumnElement[bool]:
    """The rows after the position ``after`` (per order key a value, None for NULL) in ``order``, exactly as
    ``ORDER BY`` places them on each backend; the values are bind parameters ``k0``, ``k1`` … (not for NULLs).

    Each key is compared in the form it is ordered by (``field_value``), with the bind type its filters use, so
    the predicate and the order agree on every value the API answers. Where NULL sorts differs per backend
    (``sql.dialect.nulls_sort_low``), one predicate is built per backend and the dialect picks its own.
    """
    keys = [
        _Key(field_value(k.field), k.field, k.descending, _bound(k.field, f"k{i}", value))
        for i, (k, value) in enumerate(zip(order, after, strict=True))
    ]
    forms: dict[tuple[tuple[bool, bool], ...], ColumnElement[bool]] = {}
    chosen = []
    for backend in BACKENDS:
        low = nulls_sort_low(backend)
        # Per key: whether NULLs come before the values in its direction, and whether the key can be NULL at all.
        facts = tuple((low != key.descending, may_be_null(key.value, key.field.column, backend)) for key in keys)
        if facts not in forms:
            forms[facts] = _after(keys, facts)
        chosen.append(forms[facts])
    return chosen[0] if len(forms) == 1 else PerBackend(*chosen)


@dataclass(frozen=True, slots=True)
class _Key:
    value: ColumnElement[Any]  # what the key orders by (``field_value``)
    field: FieldSnapshot
    descending: bool
    bound: BindParameter[Any] | None  # the cursor's value, None for NULL


def _bound(field: FieldSnapshot, name: str, value: Any) -> BindParameter[Any] | None:
    return None if value is None else bindparam(name, type_=field.codec.bind_type(field.column.type))


def _after(keys: Sequence[_Key], facts: Sequence[tuple[bool, bool]]) -> ColumnElement[bool]:
    """``k1 after v1 OR (k1 = v1 AND (k2 after v2 OR (… AND kn after vn)))``, with NULL placed as ``facts`` say.

    When every key runs one way and none can be NULL, the same as one row comparison ``(k1, …, kn) > (v1, …,
    vn)``, which PostgreSQL and SQLite answer from an index on the keys. The first key's own bound (``k1 >=
    v1``) is added whenever it holds, so any index on the first key narrows the scan.
    """
    first, (first_nulls_first, first_maybe_null) = keys[0], facts[0]
    bound_range = None
    if first.bound is not None and len(keys) > 1 and (first_nulls_first or not first_maybe_null):
        bound_range = first.value <= first.bound if first.descending else first.value >= first.bound
    plain = all(k.bound is not None for k in keys) and not any(maybe_null for _, maybe_null in facts)
    if plain and len(keys) > 1 and len({k.descending for k in keys}) == 1:
        row = tuple_(*(k.value for k in keys))
        bounds = tuple_(*(k.bound for k in keys))
        rows_after = row < bounds if first.descending else row > bounds
        return and_(bound_range, rows_after) if bound_range is not None else rows_after
    predicate: ColumnElement[bool] | None = None  # None: no row (FALSE)
    for key, (nulls_first, maybe_null) in zip(reversed(keys), reversed(facts), strict=True):
        value, bound = key.value, key.bound
        after: ColumnElement[bool] | None
        equal: ColumnElement[bool]
        if bound is None:  # the position is a NULL: after it come the values, if NULLs come first
            equal = value.is_(None)
            after = value.is_not(None) if nulls_first else None
        else:
            equal = value == bound
            after = value < bound if key.descending else value > bound
            if maybe_null and not nulls_first:
                after = or_(after, value.is_(None))
        tied = None if predicate is None else and_(equal, predicate)
        parts = [p for p in (after, tied) if p is not None]
        predicate = None if not parts else parts[0] if len(parts) == 1 else or_(*parts)
    if predicate is None:
        return false()
    return and_(bound_range, predicate) if bound_range is not None else predicate


def children_shape(include: IncludePlan) -> tuple[Any, ...]:
    """What decides the SQL text of :func:`build_children` besides the child entity (whose cache holds it)."""
    conditions = conditions_shape(include.conditions)
    return ("children", include.relation.child_field.column.name, conditions, fields_shape(include.fields))


def build_children(
    include: IncludePlan, parent_keys: Sequence[Any] | None = None, *, key_array: bool = False
) -> Select[Any]:
    """All children of one relation level for a list of parent key values, in key then identifier order.

    The keys are one bind parameter, ``keys``, given here or at execution. With ``key_array`` (PostgreSQL) it
    is one array, ``key = ANY(:keys)``: one compiled and prepared statement serves every number of keys.
    Elsewhere it is an expanding ``IN``, which SQLAlchemy expands per execution from one compiled form.

        parts of items (parts.fkItem = items.idItem), keys [3, 7], key_array
        → SELECT … FROM shop_part WHERE shop_part.fk_item = ANY ($1::INTEGER[]) ORDER BY fk_item, id_part
    """
    child: EntitySnapshot = include.entity
    key_column = include.relation.child_field.column
    values = None if parent_keys is None else list(parent_keys)
    where: ColumnElement[bool]
    if key_array:
        where = key_column == any_(bindparam("keys", values, type_=ARRAY(key_column.type)))
    else:
        where = key_column.in_(bindparam("keys", values, type_=key_column.type, expanding=True))
    # `filter[include.…]`: bind names `c0`, `c1` … (children_parameters), apart from `keys`.
    names = parameter_names("c")
    conditions = [build_predicate(c, names) for c in include.conditions]
    statement = select(*selected(child, include.fields)).where(where, *conditions)
    return statement.order_by(key_column, child.identifier.column)


def children_parameters(include: IncludePlan) -> dict[str, Any]:
    """The bind values of an include's filters in :func:`build_children` (its parent keys come apart)."""
    return predicate_parameters(include.conditions, "c")


# --- counts (Prefer: count=…) ---------------------------------------------------------------------------------


def _matching(plan: ReadPlan, *columns: ColumnElement[Any]) -> Select[Any]:
    statement = select(*columns).select_from(plan.entity.table)
    if plan.conditions:
        names = parameter_names()
        statement = statement.where(and_(*(build_predicate(c, names) for c in plan.conditions)))
    return statement


def build_count(plan: ReadPlan) -> Select[Any]:
    """``SELECT count(*) FROM … WHERE <the plan's conditions>``: every matching row, not the page (binds from
    :func:`condition_parameters`; a keyset cursor's position is no condition, so a total holds for each page)."""
    return _matching(plan, func.count().label("total"))


def build_estimate(plan: ReadPlan, dialect_name: str) -> Explain:
    """The planner's plan of the plan's matching rows, whose row estimate answers ``count=estimated``:
    ``EXPLAIN (FORMAT JSON) SELECT 1 FROM … WHERE …`` on PostgreSQL, ``EXPLAIN SELECT 1 …`` on MariaDB."""
    return Explain(_matching(plan, literal_column("1")), as_json=dialect_name == "postgresql")


class Explain(Executable, ClauseElement):
    """``EXPLAIN`` of a statement, whose bind parameters stay bound (never written into the SQL text)."""

    inherit_cache = True
    _traverse_internals = [
        ("statement", InternalTraversal.dp_clauseelement),
        ("as_json", InternalTraversal.dp_boolean),
    ]

    def __init__(self, statement: Select[Any], *, as_json: bool) -> None:
        self.statement = statement
        self.as_json = as_json


@compiles(Explain)
def _explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    prefix = "EXPLAIN (FORMAT JSON) " if element.as_json else "EXPLAIN "
    return prefix + compiler.process(element.statement, **kw)


# --- writes -------------------------------------------------------------------------------------------------


def build_insert(entity: EntitySnapshot, *, ordered: bool = True) -> Insert:
    """Multi-row capable INSERT returning every configured column; ``ordered``: rows in parameter order."""
    return insert(entity.table).returning(*entity.columns, sort_by_parameter_order=ordered)


def build_update(entity: EntitySnapshot, columns: Sequence[str]) -> Update:
    """``UPDATE … SET c = :v0, … WHERE identifier = :key`` for executemany; bind names are positional so
    column names with spaces or quotes never become parameter names."""
    table = entity.table
    values: dict[Column[Any], Any] = {table.c[name]: bindparam(f"v{i}") for i, name in enumerate(columns)}
    return update(entity.table).where(entity.identifier.column == bindparam("key")).values(values)


def build_select_by_keys(entity: EntitySnapshot, keys: Sequence[Any]) -> Select[Any]:
    return select(*selected(entity)).where(entity.identifier.column.in_(keys))


def build_existing(entity: EntitySnapshot, keys: Sequence[Any], extra: Column[Any] | None) -> Select[Any]:
    """Identifiers (and, for nested children, their parent-key column) of the rows that exist."""
    columns = [entity.identifier.column] + ([extra] if extra is not None else [])
    return select(*columns).where(entity.identifier.column.in_(keys))


def build_delete(entity: EntitySnapshot, keys: Sequence[Any]) -> Delete:
    return delete(entity.table).where(entity.identifier.column.in_(keys))


def build_matching_keys(entity: EntitySnapshot, conditions: Sequence[Predicate], limit: int) -> Select[Any]:
    """Identifiers of the rows matching ``conditions`` (bind values from :func:`condition_parameters`): groups
    and relation filters as a list read has them, so a delete removes exactly the rows the same filter lists."""
    names = parameter_names()
    where = and_(*(build_predicate(c, names) for c in conditions))
    return select(entity.identifier.column).where(where).order_by(entity.identifier.column).limit(limit)
