"""The write decision: DESIGN §4's rule table, in one pure function.

Fed by ``plan.write`` (each item as it is planned, before any row is known) and by ``execute.write`` (each
relation level, once the rows that exist are looked up); feeds the executor the action of every item — insert
or update these column values — or the problems that refuse it. No I/O: every row of the table is a unit test
on plain data (``tests/unit/test_write_decision.py``).

What the database knows arrives as ``existing``: identifier → parent-key value of the rows found (``True`` for
root rows), or ``None`` when nothing was looked up. Without it only the rules that hold whatever the rows are
apply; the action is then final for POST, assumed for PATCH (an UPDATE that matches nothing is answered 1303
by a guard after the query) and left open for PUT::

    decide_level(products, "PUT", items, {5: True})  # → (Decision(Action("update", {...}, 5), ()), ...)

Checks of the body alone (unknown keys, relations, types and rules) are the plan's (``plan.write``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dxapi import errors
from dxapi.errors import ErrorItem
from dxapi.plan.types import INSERT, PATCH, POST, PUT, UPDATE, Action, Decision, ItemPlan
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot

NOT_DECIDED = Decision(None)


def decide_level(
    entity: EntitySnapshot,
    method: str,
    items: Sequence[ItemPlan],
    existing: Mapping[Any, Any] | None = None,
    parent_values: Sequence[Any] | None = None,
    covered: FieldSnapshot | None = None,
) -> tuple[Decision, ...]:
    """The decision for every item of one relation level, in item order.

    ``covered``: the child field a nested level's parent fills in (``parent_values[i]`` for item ``i``). A child
    row that exists under another parent is not "this" child: for the table it is missing.
    """
    found = []
    for position, item in enumerate(items):
        parent_value = parent_values[position] if parent_values is not None else None
        if existing is None:
            exists = None
        else:
            exists = item.key is not None and item.key in existing
            if exists and covered is not None:
                exists = existing[item.key] == parent_value
        found.append(decide_item(entity, method, item, exists, covered, parent_value))
    return tuple(found)


def decide_item(
    entity: EntitySnapshot,
    method: str,
    item: ItemPlan,
    exists: bool | None,
    covered: FieldSnapshot | None = None,
    parent_value: Any = None,
) -> Decision:
    """One item; ``exists`` None: not looked up (see the module docstring)."""
    problems = _rules_whatever_the_row(entity, method, item, covered)
    if problems:
        return Decision(None, problems)
    if method == POST and covered is None and None not in item.given.values():
        return Decision(Action(INSERT, item.given, item.key))  # the common case: nothing to drop or add
    values = _without_nulls(item.given) if method == POST else dict(item.given)
    if covered is not None:
        values[covered.column.name] = parent_value
    if method == POST:
        return Decision(Action(INSERT, values, item.key))
    if method == PATCH:
        if exists is False:
            return Decision(None, (missing_row(entity, item),))
        values.pop(entity.identifier.column.name, None)
        return Decision(Action(UPDATE, values, item.key))
    if exists is None:
        return NOT_DECIDED
    if exists:
        return _put_update(entity, item, values, covered)
    return _put_create(entity, item, values, covered)


def missing_row(entity: EntitySnapshot, item: ItemPlan) -> ErrorItem:
    """1303: by id the URL names the entity, in a collection the item (``products[2]``)."""
    return errors.ENTITY_NOT_FOUND(path=entity.alias if item.by_id else item.path)


# --- the rules that hold whatever the row ------------------------------------------------------------------------


def _rules_whatever_the_row(
    entity: EntitySnapshot, method: str, item: ItemPlan, covered: FieldSnapshot | None
) -> tuple[ErrorItem, ...]:
    problems = _url_identifier(entity, method, item) if item.by_id else ()
    if method == POST:
        problems += _not_creatable(entity, item)
    elif method == PATCH:
        problems += _patch_rules(entity, item)
    if method in (POST, PUT):
        problems += _required(entity, method, item, covered)
    return problems


def _url_identifier(entity: EntitySnapshot, method: str, item: ItemPlan) -> tuple[ErrorItem, ...]:
    identifier = entity.identifier
    body_key = item.given.get(identifier.column.name)
    if not item.by_id or body_key is None or body_key == item.key:
        return ()
    if identifier.config.is_editable:
        return (errors.IDENTIFIER_MISMATCH(path=item.path),)
    if method != PATCH:  # PATCH refuses any non-editable identifier in the body (_patch_rules)
        # Spryker: a value for a field that may not change is 1304, whatever the URL says.
        return (errors.IMMUTABLE_FIELD(path=item.path, field=identifier.name),)
    return ()


def _not_creatable(entity: EntitySnapshot, item: ItemPlan) -> tuple[ErrorItem, ...]:
    if entity.not_creatable.isdisjoint(item.given):
        return ()  # the common case, decided without a loop
    problems: tuple[ErrorItem, ...] = ()
    for name, value in item.given.items():
        if value is not None and not (target := entity.by_column[name]).config.is_creatable:
            problems += (errors.IMMUTABLE_FIELD(path=item.path, field=target.name),)
    return problems


def _patch_rules(entity: EntitySnapshot, item: ItemPlan) -> tuple[ErrorItem, ...]:
    problems: tuple[ErrorItem, ...] = ()
    if item.key is None and not item.by_id:
        problems += (errors.MISSING_IDENTIFIER(path=item.path),)
    identifier = entity.identifier
    for name, value in item.given.items():
        target = entity.by_column[name]
        exempt = target is identifier and not item.by_id  # the identifier names the row in a collection
        if not target.config.is_editable and not exempt:
            # A null is a modification too: a read-only field can never be cleared by a client.
            problems += (errors.IMMUTABLE_FIELD(path=item.path, field=target.name),)
        elif value is None and not target.column.nullable:
            problems += (errors.NOT_NULLABLE(path=f"{item.path}.{target.name}"),)
    return problems


def _required(
    entity: EntitySnapshot, method: str, item: ItemPlan, covered: FieldSnapshot | None
) -> tuple[ErrorItem, ...]:
    problems: tuple[ErrorItem, ...] = ()
    given = item.given
    for target in entity.must_give:  # the identifier is never among them
        name = target.column.name
        if given.get(name) is not None or target is covered:
            continue  # present, or filled in by the parent
        if name in item.rejected:
            continue  # sent, and already reported as invalid
        if target.config.rules.is_required:
            problems += (errors.REQUIRED_FIELD(path=item.path, field=target.name),)
        elif target.db_required and method == POST:
            problems += (errors.NOT_NULLABLE(path=f"{item.path}.{target.name}"),)
    return problems


# --- PUT, once it is known whether the row exists ---------------------------------------------------------------


def _put_update(
    entity: EntitySnapshot, item: ItemPlan, values: dict[str, Any], covered: FieldSnapshot | None
) -> Decision:
    """Editable rules; PUT replaces, so an omitted editable field is reset to NULL."""
    problems: tuple[ErrorItem, ...] = ()
    for target in entity.fields:
        name = target.column.name
        if target is entity.identifier or target is covered:
            continue
        editable = target.config.is_editable
        if name in values and not editable:
            problems += (errors.IMMUTABLE_FIELD(path=item.path, field=target.name),)
        elif editable and name not in values:
            values[name] = None
        if editable and values.get(name) is None and not target.column.nullable:
            problems += (errors.NOT_NULLABLE(path=f"{item.path}.{target.name}"),)
    if problems:
        return Decision(None, problems)
    values.pop(entity.identifier.column.name, None)
    return Decision(Action(UPDATE, values, item.key))


def _put_create(
    entity: EntitySnapshot, item: ItemPlan, values: dict[str, Any], covered: FieldSnapshot | None
) -> Decision:
    """Creatable rules; the identifier given is inserted only where the configuration lets clients choose it."""
    identifier = entity.identifier
    if item.key is not None:
        if not identifier.config.is_creatable:
            shown = f"{identifier.name}: {item.key}"
            return Decision(None, (errors.NOT_CREATABLE_IDENTIFIER(path=item.path, identifier=shown),))
        values[identifier.column.name] = item.key
    problems: tuple[ErrorItem, ...] = ()
    for name, value in list(values.items()):
        target = entity.by_column[name]
        if target.config.is_creatable or target is identifier or target is covered:
            continue
        if value is None:
            del values[name]  # null for a field the client may not set: the database default applies
        else:
            problems += (errors.IMMUTABLE_FIELD(path=item.path, field=target.name),)
    for target in entity.fields:
        missing = target is not covered and target.db_required and values.get(target.column.name) is None
        if missing and not target.config.rules.is_required:  # a required one is 1307 (_required)
            problems += (errors.NOT_NULLABLE(path=f"{item.path}.{target.name}"),)
    if problems:
        return Decision(None, problems)
    return Decision(Action(INSERT, values, item.key))


def _without_nulls(given: Mapping[str, Any]) -> dict[str, Any]:
    """POST: an explicit null is dropped, so the database default applies."""
    return {name: value for name, value in given.items() if value is not None}
