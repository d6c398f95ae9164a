"""Planning reads: ``ReadRequest`` + snapshot → ``ReadPlan``, or a catalogued error.

This is where names meet the configuration. An alias that is not active is 404 (007), a filter field that is
not configured 1315, a sort field 2005, a relation 1313; values are parsed with the field's codec so a
database never sees ``"abc"`` compared with an integer column. A ``page[cursor]`` is read against the order it
was made for (``plan.cursor``; 2020 for one that is not). ``fields[...]`` names the root by its alias and an
included relation by its path in ``include`` or, where it is included once, its bare name (2040 to 2043).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from dxapi import errors
from dxapi.plan.access import READ, Allows, require
from dxapi.plan.cursor import parse_cursor
from dxapi.plan.types import Condition, CountPlan, Exists, Group, IncludePlan, OrderKey, Predicate, ReadPlan
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, Snapshot
from dxapi.request.params import NO_PARAMETERS, FilterGroup, FilterTerm, IncludeFilter, ReadRequest
from dxapi.settings import Settings


def build_read_plan(
    snapshot: Snapshot,
    entity: EntitySnapshot,
    request: ReadRequest,
    settings: Settings,
    *,
    allows: Allows,
    identifier: str | None = None,
    count: str | None = None,
    export: bool = False,
) -> ReadPlan:
    """``entity`` comes from ``plan.access.authorize`` (its read scope checked); included entities and those
    a relation filter reads are checked here, once the relations are resolved. ``count``: the ``Prefer``
    count of a list (``request.prefer``), None for none; ``export``: the plan of a streamed export."""
    if request is NO_PARAMETERS and identifier is not None:
        return _item_plan(entity, identifier)
    conditions = _all_of(snapshot, entity, request.filters, settings, allows)
    if identifier is not None:
        conditions.append(_identifier_condition(entity, identifier))
    limit = request.limit if request.limit is not None else settings.default_page_limit
    if limit > settings.max_page_limit:
        raise errors.PAGE_LIMIT_TOO_LARGE.error(value=limit, maximum=settings.max_page_limit)
    order = _order(entity, request.sort)
    cursor = None if request.cursor is None else parse_cursor(entity, order, request.cursor)
    includes = build_includes(snapshot, entity, request.include, settings.max_include_depth)
    require(_included_aliases(includes), allows, READ)
    if request.include_filters:
        includes = _filtered(snapshot, includes, request.include_filters, settings, allows)
    shown = _sparse_targets(entity, includes, request.fields)
    includes = tuple(_include_fields(i, (i.relation.name,), shown) for i in includes)
    root = shown.get(())
    selected: tuple[FieldSnapshot, ...] | None = None
    hidden: tuple[str, ...] = ()
    if root is not None and identifier is not None:
        # A single row selects every field: its ETag is the whole row's, the one If-Match compares with.
        answered = {f.name for f in root} | {entity.identifier.name}
        hidden = tuple(name for name in entity.names if name not in answered)
    elif root is not None:
        # A next cursor (and an export's next batch: keyset batches on MariaDB, execute.export) is made of the
        # order keys' values, and included rows attach by their parent's key.
        keyset = cursor is not None or export
        needed = [*(k.field for k in order if keyset), *(i.relation.parent_field for i in includes)]
        selected, hidden = _selection(entity, root, needed)
    return ReadPlan(
        entity=entity,
        conditions=tuple(conditions),
        order=order,
        offset=request.offset or 0,
        limit=1 if identifier is not None else limit,
        includes=includes,
        single=identifier is not None,
        cursor=cursor,
        fields=selected,
        hidden=hidden,
        count=None if count is None else CountPlan(count == "estimated", settings.count_exact_below),
    )


def _item_plan(entity: EntitySnapshot, identifier: str) -> ReadPlan:
    """``GET /{alias}/{id}`` without parameters: the plan the general way makes for it, in a tenth of the time
    (the row, every field of it)."""
    condition = _identifier_condition(entity, identifier)
    return ReadPlan(entity, (condition,), (OrderKey(entity.identifier, False),), 0, 1, (), True)


def _identifier_condition(entity: EntitySnapshot, identifier: str) -> Condition:
    try:
        key = entity.identifier.parse(identifier)
    except ValueError:
        # A value that cannot be an identifier of this entity names no row: the same answer as a miss.
        raise errors.ENTITY_NOT_FOUND.error(path=entity.alias) from None
    return Condition(entity.identifier, "eq", key)


Path = tuple[str, ...]  # an include's relation names from the root: ("categoryProducts", "productStocks")


def _walk(includes: tuple[IncludePlan, ...], above: Path = ()) -> Iterator[tuple[Path, IncludePlan]]:
    for include in includes:
        path = (*above, include.relation.name)
        yield path, include
        yield from _walk(include.includes, path)


def _sparse_targets(
    entity: EntitySnapshot, includes: tuple[IncludePlan, ...], sparse: tuple[tuple[str, tuple[str, ...]], ...]
) -> dict[Path, tuple[FieldSnapshot, ...]]:
    """``fields[...]`` resolved: the path of what each one selects from (``()``: the root) → its fields.

    The root's alias names the root, always; a dotted target is an include path; a bare name is the relation
    of that name, which must then be included at one place only.
    """
    if not sparse:
        return {}
    nodes = dict(_walk(includes))
    out: dict[Path, tuple[FieldSnapshot, ...]] = {}
    named: dict[Path, str] = {}
    for target, names in sparse:
        path: Path
        if target == entity.alias:
            path = ()
        elif "." in target:
            path = tuple(target.split("."))
            if path not in nodes:
                raise errors.FIELDS_TARGET_UNKNOWN.error(target=target, alias=entity.alias)
        else:
            fits = [p for p in nodes if p[-1] == target]
            if not fits:
                raise errors.FIELDS_TARGET_UNKNOWN.error(target=target, alias=entity.alias)
            if len(fits) > 1:
                listed = ", ".join(f"`{'.'.join(p)}`" for p in fits)
                raise errors.FIELDS_TARGET_AMBIGUOUS.error(target=target, paths=listed)
            path = fits[0]
        if path in named:
            raise errors.FIELDS_LIST_INVALID.error(
                target=target, reason=f"the same fields are already chosen by `fields[{named[path]}]`"
            )
        named[path] = target
        of = nodes[path].entity if path else entity
        out[path] = _fields_of(of, target, names)
    return out


def _fields_of(entity: EntitySnapshot, target: str, names: tuple[str, ...]) -> tuple[FieldSnapshot, ...]:
    if len(names) > len(entity.fields):
        # Checked before the names: a list longer than the entity is wrong however it is spelled.
        raise errors.FIELDS_LIST_INVALID.error(
            target=target, reason=f"{len(names)} fields named; `{entity.alias}` has {len(entity.fields)}"
        )
    out = []
    for name in names:
        found = entity.by_name.get(name)
        if found is None:
            raise errors.FIELDS_FIELD_NOT_FOUND.error(target=target, field=name[:100], alias=entity.alias)
        out.append(found)
    return tuple(out)


def _selection(
    entity: EntitySnapshot, shown: tuple[FieldSnapshot, ...], needed: Iterable[FieldSnapshot]
) -> tuple[tuple[FieldSnapshot, ...], tuple[str, ...]]:
    """(the fields to select, in entity order; the names of those selected only because they are ``needed``)."""
    answered = {f.name for f in shown} | {entity.identifier.name}
    wanted = answered | {f.name for f in needed}
    selected = tuple(f for f in entity.fields if f.name in wanted)
    return selected, tuple(f.name for f in selected if f.name not in answered)


def _include_fields(include: IncludePlan, path: Path, shown: dict[Path, tuple[FieldSnapshot, ...]]) -> IncludePlan:
    """``include`` (and its nested includes) with the selection its ``fields[...]`` asks for."""
    nested = tuple(_include_fields(i, (*path, i.relation.name), shown) for i in include.includes)
    chosen = shown.get(path)
    if chosen is None:
        return dataclasses.replace(include, includes=nested) if nested != include.includes else include
    # The relation's key attaches a row to its parent; each nested relation's key attaches its children.
    needed = [include.relation.child_field, *(i.relation.parent_field for i in nested)]
    selected, hidden = _selection(include.entity, chosen, needed)
    return dataclasses.replace(include, includes=nested, fields=selected, hidden=hidden)


def _included_aliases(includes: tuple[IncludePlan, ...]) -> list[str]:
    return [a for i in includes for a in (i.entity.alias, *_included_aliases(i.includes))]


def _field(entity: EntitySnapshot, name: str) -> FieldSnapshot:
    found = entity.by_name.get(name)
    if found is None:
        raise errors.FILTER_FIELD_NOT_FOUND.error(field=name, alias=entity.alias)
    return found


def _all_of(
    snapshot: Snapshot,
    entity: EntitySnapshot,
    items: tuple[FilterTerm | FilterGroup, ...],
    settings: Settings,
    allows: Allows,
    through: tuple[tuple[tuple[str, ...], FilterTerm], ...] = (),
) -> list[Predicate]:
    """Filters that hold together, resolved on ``entity``: own fields become conditions, a prefix naming a
    relation an ``Exists``. The terms through one relation at this level are matched by one related row
    together (``filter[productStocks.quantity]`` and ``filter[productStocks.warehouse]``: one stock row in
    that warehouse with that quantity); each group is resolved on its own.

    ``through``: terms already known to go through the relation chain they carry (a deeper level's share).
    """
    out: list[Predicate] = []
    by_relation: dict[str, list[tuple[tuple[str, ...], FilterTerm]]] = {}
    for item in items:
        if isinstance(item, FilterGroup):
            out.append(_group(snapshot, entity, item, settings, allows))
            continue
        chain, field = _relation_chain(entity, item, settings.max_include_depth)
        if not chain:
            out.extend(_conditions(entity, item, settings))
        else:
            by_relation.setdefault(chain[0], []).append((chain[1:], FilterTerm(field, item.operations)))
    for chain, term in through:
        if not chain:
            out.extend(_conditions(entity, term, settings))
        else:
            by_relation.setdefault(chain[0], []).append((chain[1:], term))
    for name, terms in by_relation.items():
        relation = entity.relations.get(name)
        if relation is None:
            raise errors.RELATION_NOT_FOUND.error(relation=name)
        child = snapshot.entities[relation.child_alias]
        # Before anything of the related entity is resolved: a caller without its read scope learns none of it.
        require([child.alias], allows, READ)
        inner = _all_of(snapshot, child, (), settings, allows, tuple(terms))
        out.append(Exists(relation, child, tuple(inner)))
    return out


def _relation_chain(entity: EntitySnapshot, term: FilterTerm, max_depth: int) -> tuple[tuple[str, ...], str]:
    """The relations ``term`` goes through (none for the entity's own field) and the field at their end.

    ``filter[x.price]``: own field, whatever ``x`` is, unless ``x`` is a relation (Spryker ignores the prefix).
    ``filter[productStocks.quantity]``: through ``productStocks``. With more dots every part but the last is a
    relation, the first one skipped when it is no relation of the entity (the alias prefix):
    ``filter[categories.categoryProducts.productStocks.quantity]`` goes through two.
    """
    if term.prefix not in entity.relations and "." not in term.field:
        return (), term.field  # the usual case, Spryker's own form: no list built on the hot path
    parts = [term.prefix, *term.field.split(".")]
    if parts[0] not in entity.relations:
        if len(parts) == 2:
            return (), term.field
        parts = parts[1:]
    chain = tuple(parts[:-1])
    if len(chain) > max_depth:
        name = f"filter[{term.prefix}.{term.field}]"
        raise errors.RELATION_FILTER_TOO_DEEP.error(name=name, count=len(chain), maximum=max_depth)
    return chain, parts[-1]


def _group(
    snapshot: Snapshot, entity: EntitySnapshot, group: FilterGroup, settings: Settings, allows: Allows
) -> Predicate:
    if group.operator in ("or", "and"):
        # Each element of the array on its own: two elements through one relation may be matched by two
        # different related rows (an element of several keys is one "all" item, request.params).
        members = [_all_of(snapshot, entity, (item,), settings, allows) for item in group.items]
        return Group(group.operator, tuple(_one(member) for member in members))
    # `not` and "all": the items hold together, as the top-level filters do.
    items = tuple(_all_of(snapshot, entity, group.items, settings, allows))
    return Group(group.operator, items) if group.operator == "not" else _one(list(items))


def _one(predicates: list[Predicate]) -> Predicate:
    return predicates[0] if len(predicates) == 1 else Group("and", tuple(predicates))


def _filtered(
    snapshot: Snapshot,
    includes: tuple[IncludePlan, ...],
    filters: tuple[IncludeFilter, ...],
    settings: Settings,
    allows: Allows,
) -> tuple[IncludePlan, ...]:
    """The include plans with each ``filter[include.{chain}.{field}]`` on the level its chain names."""
    by_chain: dict[tuple[str, ...], list[FilterTerm]] = {}
    for given in filters:
        by_chain.setdefault(given.chain, []).append(given.term)

    def attach(plans: tuple[IncludePlan, ...], path: tuple[str, ...]) -> tuple[IncludePlan, ...]:
        out = []
        for plan in plans:
            here = (*path, plan.relation.name)
            terms = by_chain.pop(here, [])
            conditions = tuple(_all_of(snapshot, plan.entity, tuple(terms), settings, allows))
            out.append(IncludePlan(plan.relation, plan.entity, attach(plan.includes, here), conditions))
        return tuple(out)

    attached = attach(includes, ())
    if by_chain:  # what is left names a chain `include` does not ask for
        chain, terms = next(iter(by_chain.items()))
        raise errors.INCLUDE_FILTER_NOT_INCLUDED.error(chain=".".join(chain), field=terms[0].field)
    return attached


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
    if operator in ("in", "nin"):
        if not isinstance(raw, list):
            raise fail(f"`{operator}` takes a list of values")
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
