"""Planning writes: body items + snapshot → ``WritePlan`` with every problem of every item, with its path.

Two steps, both pure:

* ``build_write_plan`` — everything decidable from the body alone: unknown keys (1311), relations (1313,
  1314, 2015), types and rules (1305, 1306, 1316), creatable/editable/required for the cases that do not
  depend on whether the row exists (DESIGN §4's rule table).
* ``decide`` — the rest, once the executor knows which identifiers exist: PATCH of a missing row (1303),
  PUT-update vs PUT-create rules, PUT-create without a creatable identifier (1308), and the final column
  values (PUT resets omitted editable fields to NULL).

Paths are Spryker's: ``products[3]``, nested ``products[3].stocks[0]`` (the child's alias), plus the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dxapi import errors
from dxapi.errors import ErrorItem
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, RelationSnapshot, Snapshot
from dxapi.validate import Invalid

POST, PATCH, PUT = "POST", "PATCH", "PUT"
INSERT, UPDATE = "insert", "update"


@dataclass(slots=True)
class ItemPlan:
    index: int
    path: str
    given: dict[str, Any]  # column name → bound value, for the fields present in the body (None = null)
    key: Any  # the identifier's bound value, or None when absent
    children: list[ChildrenPlan] = field(default_factory=list)
    by_id: bool = False  # the identifier came from the URL (/{alias}/{id})


@dataclass(slots=True)
class ChildrenPlan:
    relation: RelationSnapshot
    entity: EntitySnapshot
    items: list[ItemPlan]


@dataclass(frozen=True, slots=True)
class Action:
    """What the executor does for one item: insert or update these column values."""

    kind: str
    values: dict[str, Any]
    key: Any


@dataclass(frozen=True, slots=True)
class WritePlan:
    entity: EntitySnapshot
    method: str
    items: tuple[ItemPlan, ...]
    errors: dict[int, list[ErrorItem]]  # root index → problems of that item and its children
    single: bool
    transactional: bool

    @property
    def all_errors(self) -> list[ErrorItem]:
        return [e for index in sorted(self.errors) for e in self.errors[index]]


def build_write_plan(
    snapshot: Snapshot,
    entity: EntitySnapshot,
    method: str,
    raw_items: list[dict[str, Any]],
    *,
    url_key: str | None,
    transactional: bool,
    max_depth: int,
) -> WritePlan:
    planner = _Planner(snapshot, method, max_depth)
    items = []
    found: dict[int, list[ErrorItem]] = {}
    for index, raw in enumerate(raw_items):
        problems: list[ErrorItem] = []
        path = f"{entity.alias}[{index}]"
        item = planner.item(entity, raw, index, path, problems, depth=0, covered=None, url_key=url_key)
        items.append(item)
        if problems:
            found[index] = problems
    return WritePlan(entity, method, tuple(items), found, url_key is not None, transactional)


class _Planner:
    def __init__(self, snapshot: Snapshot, method: str, max_depth: int) -> None:
        self.snapshot = snapshot
        self.method = method
        self.max_depth = max_depth

    def item(
        self,
        entity: EntitySnapshot,
        raw: dict[str, Any],
        index: int,
        path: str,
        problems: list[ErrorItem],
        *,
        depth: int,
        covered: FieldSnapshot | None,
        url_key: str | None = None,
    ) -> ItemPlan:
        given: dict[str, Any] = {}
        children: list[ChildrenPlan] = []
        for name, value in raw.items():
            target = entity.by_name.get(name)
            if target is None:
                self._children(entity, name, value, path, problems, depth, children)
                continue
            if covered is not None and target is covered:
                continue  # filled from the parent row, whatever the client sent
            if value is None:
                given[target.column.name] = None
                continue
            try:
                given[target.column.name] = target.check(value)
            except Invalid as exc:
                problems.append(_invalid(exc.kind, path, target))
        identifier = entity.identifier
        item = ItemPlan(index, path, given, given.get(identifier.column.name), children)
        if url_key is not None:
            self._url_identifier(entity, item, url_key, problems)
        self._stateless_rules(entity, item, raw, problems, covered)
        return item

    def _children(
        self,
        entity: EntitySnapshot,
        name: str,
        value: Any,
        path: str,
        problems: list[ErrorItem],
        depth: int,
        out: list[ChildrenPlan],
    ) -> None:
        relation = entity.relations.get(name)
        if relation is None:
            if isinstance(value, list):
                problems.append(errors.RELATION_NOT_FOUND(relation=name))
            else:
                problems.append(errors.UNKNOWN_FIELD(path=path, field=name))
            return
        if not relation.is_editable:
            problems.append(errors.RELATION_NOT_EDITABLE(relation=name))
            return
        child = self.snapshot.entities[relation.child_alias]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            problems.append(errors.INVALID_TYPE(path=path, field=name))
            return
        if depth + 1 >= self.max_depth:
            problems.append(errors.NESTING_TOO_DEEP(path=f"{path}.{name}", maximum=self.max_depth))
            return
        items = [
            self.item(child, raw, j, f"{path}.{child.alias}[{j}]", problems, depth=depth + 1,
                      covered=relation.child_field)
            for j, raw in enumerate(value)
        ]
        out.append(ChildrenPlan(relation, child, items))

    def _url_identifier(self, entity: EntitySnapshot, item: ItemPlan, url_key: str, problems: list[ErrorItem]) -> None:
        identifier = entity.identifier
        item.by_id = True
        try:
            key = identifier.parse(url_key)
        except ValueError:
            problems.append(errors.ENTITY_NOT_FOUND(path=entity.alias))
            return
        body_key = item.given.get(identifier.column.name)
        if body_key is not None and body_key != key:
            if identifier.config.is_editable:
                problems.append(errors.IDENTIFIER_MISMATCH(path=item.path))
            elif self.method != PATCH:  # PATCH refuses any non-editable identifier in the body (_stateless_rules)
                # Spryker: a value for a field that may not change is 1304, whatever the URL says.
                problems.append(errors.IMMUTABLE_FIELD(path=item.path, field=identifier.name))
        item.key = key

    def _stateless_rules(
        self,
        entity: EntitySnapshot,
        item: ItemPlan,
        raw: dict[str, Any],
        problems: list[ErrorItem],
        covered: FieldSnapshot | None,
    ) -> None:
        identifier = entity.identifier
        if self.method == POST:
            for name, value in list(item.given.items()):
                target = entity.by_column[name]
                if value is None:
                    del item.given[name]  # explicit null on create: the database default applies
                elif not target.config.is_creatable:
                    problems.append(errors.IMMUTABLE_FIELD(path=item.path, field=target.name))
        elif self.method == PATCH:
            if item.key is None and not item.by_id:
                problems.append(errors.MISSING_IDENTIFIER(path=item.path))
            for name, value in item.given.items():
                target = entity.by_column[name]
                exempt = target is identifier and not item.by_id
                if not target.config.is_editable and not exempt:
                    # A null is a modification too: a read-only field can never be cleared by a client.
                    problems.append(errors.IMMUTABLE_FIELD(path=item.path, field=target.name))
                elif value is None and not target.column.nullable:
                    problems.append(errors.NOT_NULLABLE(path=f"{item.path}.{target.name}"))
        if self.method in (POST, PUT):
            for target in entity.fields:
                if target is covered or target is identifier or raw.get(target.name) is not None:
                    continue  # present (valid, or already reported as invalid)
                if target.config.rules.is_required:
                    problems.append(errors.REQUIRED_FIELD(path=item.path, field=target.name))
                elif target.db_required and self.method == POST:
                    problems.append(errors.NOT_NULLABLE(path=f"{item.path}.{target.name}"))


def _invalid(kind: str, path: str, target: FieldSnapshot) -> ErrorItem:
    if kind == "type":
        return errors.INVALID_TYPE(path=path, field=target.name)
    if kind == "url":
        return errors.INVALID_URL(path=path, field=target.name)
    return errors.INVALID_VALUE(path=path, field=target.name, rules=target.rules_text)


def decide(
    entity: EntitySnapshot, method: str, item: ItemPlan, exists: bool, problems: list[ErrorItem],
    covered: FieldSnapshot | None = None, parent_value: Any = None,
) -> Action | None:
    """The final action for one item, now that it is known whether its row exists (None: refused)."""
    identifier = entity.identifier
    values = dict(item.given)
    if covered is not None:
        values[covered.column.name] = parent_value
    if method == POST:
        return Action(INSERT, values, item.key)
    if method == PATCH:
        if not exists:
            problems.append(errors.ENTITY_NOT_FOUND(path=entity.alias if item.by_id else item.path))
            return None
        values.pop(identifier.column.name, None)
        return Action(UPDATE, values, item.key)
    # PUT
    before = len(problems)
    if exists:
        for target in entity.fields:
            name = target.column.name
            if target is identifier or target is covered:
                continue
            value = values.get(name)
            if name in values and not target.config.is_editable:
                problems.append(errors.IMMUTABLE_FIELD(path=item.path, field=target.name))
            elif target.config.is_editable and name not in values:
                values[name] = None  # PUT replaces: an omitted editable field is reset
            if target.config.is_editable and values.get(name) is None and not target.column.nullable:
                problems.append(errors.NOT_NULLABLE(path=f"{item.path}.{target.name}"))
        values.pop(identifier.column.name, None)
        return Action(UPDATE, values, item.key) if len(problems) == before else None
    if item.key is not None:
        if not identifier.config.is_creatable:
            shown = f"{identifier.name}: {item.key}"
            problems.append(errors.NOT_CREATABLE_IDENTIFIER(path=item.path, identifier=shown))
            return None
        values[identifier.column.name] = item.key
    for name, value in list(values.items()):
        target = entity.by_column[name]
        if target.config.is_creatable or target is identifier or target is covered:
            continue
        if value is None:
            del values[name]  # null for a field the client may not set: the database default applies
        else:
            problems.append(errors.IMMUTABLE_FIELD(path=item.path, field=target.name))
    for target in entity.fields:
        missing = target is not covered and target.db_required and values.get(target.column.name) is None
        if missing and not target.config.rules.is_required:  # a required field was already reported as 1307
            problems.append(errors.NOT_NULLABLE(path=f"{item.path}.{target.name}"))
    return Action(INSERT, values, item.key) if len(problems) == before else None


def answer_row(
    snapshot: Snapshot, entity: EntitySnapshot, row: dict[str, Any], readable: Callable[[str], bool]
) -> dict[str, Any]:
    """What a write answer shows of a saved row: every field where the caller may read the entity, else only
    the identifier (``{"id": 5}``); nested rows under their relation name, each judged by its own entity."""
    identifier = entity.identifier.name
    shown = dict(row) if readable(entity.alias) else {identifier: row[identifier]}
    for name, relation in entity.relations.items():
        children = row.get(name)
        if children is not None:
            child = snapshot.entities[relation.child_alias]
            shown[name] = [answer_row(snapshot, child, c, readable) for c in children]
    return shown
