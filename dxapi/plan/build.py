"""Planning reads: ``ReadRequest`` + snapshot → ``ReadPlan``, or a catalogued error.

This is where names meet the configuration. An alias that is not active is 404 (007), a filter field that is
not configured 1315, a sort field 2005, a relation 1313; values are parsed with the field's codec so a
database never sees ``"abc"`` compared with an integer column. A ``page[cursor]`` is read against the order it
was made for (``plan.cursor``; 2020 for one that is not).
"""

from __future__ import annotations

from typing import Any

from dxapi import errors
from dxapi.plan.access import READ, Allows, require
from dxapi.plan.cursor import parse_cursor
from dxapi.plan.types import Condition, IncludePlan, OrderKey, ReadPlan
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, Snapshot
from dxapi.request.params import FilterTerm, ReadRequest
from dxapi.settings import Settings


def build_read_plan(
    snapshot: Snapshot,
    entity: EntitySnapshot,
    request: ReadRequest,
    settings: Settings,
    *,
    allows: Allows,
    identifier: str | None = None,
) -> ReadPlan:
    """``entity`` comes from ``plan.access.authorize`` (its read scope checked); included entities are
    checked here, once the relations are resolved."""
    conditions = [c for term in request.filters for c in _conditions(entity, term, settings)]
    if identifier is not None:
        try:
            key = entity.identifier.parse(identifier)
        except ValueError:
            # A value that cannot be an identifier of this entity names no row: the same answer as a miss.
            raise errors.ENTITY_NOT_FOUND.error(path=entity.alias) from None
        conditions.append(Condition(entity.identifier, "eq", key))
    limit = request.limit if request.limit is not None else settings.default_page_limit
    if limit > settings.max_page_limit:
        raise errors.PAGE_LIMIT_TOO_LARGE.error(value=limit, maximum=settings.max_page_limit)
    order = _order(entity, request.sort)
    cursor = None if request.cursor is None else parse_cursor(entity, order, request.cursor)
    includes = build_includes(snapshot, entity, request.include, settings.max_include_depth)
    require(_included_aliases(includes), allows, READ)
    return ReadPlan(
        entity=entity,
        conditions=tuple(conditions),
        order=order,
        offset=request.offset or 0,
        limit=1 if identifier is not None else limit,
        includes=includes,
        single=identifier is not None,
        cursor=cursor,
    )


def _included_aliases(includes: tuple[IncludePlan, ...]) -> list[str]:
    return [a for i in includes for a in (i.entity.alias, *_included_aliases(i.includes))]


def _field(entity: EntitySnapshot, name: str) -> FieldSnapshot:
    found = entity.by_name.get(name)
    if found is None:
        raise errors.FILTER_FIELD_NOT_FOUND.error(field=name, alias=entity.alias)
    return found


def _conditions(entity: EntitySnapshot, term: FilterTerm, settings: Settings) -> list[Condition]:
    field = _field(entity, term.field)
    out = []
    for operator, raw in term.operations:
        out.append(Condition(field, operator, _operand(field, operator, raw, settings)))
    return out


def _operand(field: FieldSnapshot, operator: str, raw: Any, settings: Settings) -> Any:
    def fail(reason: str) -> errors.ApiError:
        return errors.FILTER_VALUE_INVALID.error(field=field.name, reason=reason)

    if operator == "isNull":
        if not isinstance(raw, bool):
            raise fail("`isNull` takes true or false")
        return raw
    codec = field.codec
    if not codec.comparable:
        raise fail("JSON fields can only be filtered with isNull")
    if operator == "in":
        if not isinstance(raw, list):
            raise fail("`in` takes a list of values")
        if len(raw) > settings.max_filter_values:
            raise errors.FILTER_TOO_LARGE.error(field=field.name, count=len(raw), maximum=settings.max_filter_values)
        return tuple(_value(field, item, fail) for item in raw)
    if operator in ("like", "ilike"):
        if not codec.likeable or not isinstance(raw, str):
            raise fail(f"`{operator}` takes a string and works on string fields only")
        return _value(field, raw, fail)  # the escapes were checked with the grammar (request.params)
    if operator in ("gt", "gte", "lt", "lte") and not codec.ordered:
        raise fail(f"`{operator}` does not apply to {field.type.value} fields")
    if raw is None:
        raise fail('use {"isNull": true} to match NULL')
    return _value(field, raw, fail)


def _value(field: FieldSnapshot, raw: Any, fail: Any) -> Any:
    if isinstance(raw, (dict, list)) or raw is None:
        raise fail("expected a single value")
    try:
        return field.parse(raw)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _order(entity: EntitySnapshot, sort: tuple[tuple[str, bool], ...]) -> tuple[OrderKey, ...]:
    keys = []
    for name, descending in sort:
        field = entity.by_name.get(name)
        if field is None:
            raise errors.SORT_FIELD_NOT_FOUND.error(field=name, alias=entity.alias)
        if not field.codec.comparable:
            # PostgreSQL's json has no ordering at all, the others would order by text: refused everywhere.
            raise errors.SORT_FIELD_NOT_SORTABLE.error(field=name, alias=entity.alias, type=field.type.value)
        keys.append(OrderKey(field, descending))
    # The identifier always ends the order, so equal sort values still page deterministically.
    if not any(k.field is entity.identifier for k in keys):
        keys.append(OrderKey(entity.identifier, False))
    return tuple(keys)


def build_includes(
    snapshot: Snapshot, entity: EntitySnapshot, chains: tuple[tuple[str, ...], ...], max_depth: int
) -> tuple[IncludePlan, ...]:
    """``(("a", "b"), ("a", "c"))`` → one ``a`` plan holding ``b`` and ``c``: shared prefixes merge."""
    for chain in chains:
        if len(chain) > max_depth:
            raise errors.INCLUDE_TOO_DEEP.error(chain=".".join(chain), maximum=max_depth)
    grouped: dict[str, list[tuple[str, ...]]] = {}
    for chain in chains:
        grouped.setdefault(chain[0], [])
        if len(chain) > 1:
            grouped[chain[0]].append(chain[1:])
    plans = []
    for name, rest in grouped.items():
        relation = entity.relations.get(name)
        if relation is None:
            raise errors.RELATION_NOT_FOUND.error(relation=name)
        child = snapshot.entities[relation.child_alias]
        plans.append(IncludePlan(relation, child, build_includes(snapshot, child, tuple(rest), max_depth)))
    return tuple(plans)
