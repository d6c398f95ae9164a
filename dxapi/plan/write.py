"""Planning writes: body items + snapshot → a frozen ``WritePlan`` with every problem of every item, with its path.

Fed by ``request.body`` (the parsed items) and the snapshot; feeds ``execute.write``. Pure. Here: everything the
body alone tells — unknown keys (1311), relations (1313, 1314, 2015), types and rules (1305, 1306, 1316), an
identifier in the URL that cannot be one (1303). The rule table itself (creatable, editable, required, missing
identifier, …) is ``plan.decide``'s: each item is decided here as far as it can be without the database, and
again by the executor once it knows which rows exist.

Paths are Spryker's: ``products[3]``, nested ``products[3].stocks[0]`` (the child's alias), plus the field.
Problems keep the order a reader meets them: an item's own keys in body order (a relation's children in
place), then the rules of the item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dxapi import errors
from dxapi.errors import ErrorItem
from dxapi.fields import Invalid
from dxapi.plan.access import WRITE, Allows, require
from dxapi.plan.decide import decide_item
from dxapi.plan.types import POST, ChildrenPlan, Decision, ItemPlan, WritePlan
from dxapi.preconditions import ETAG_KEY, Precondition, item_precondition
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, Snapshot


def build_write_plan(
    snapshot: Snapshot,
    entity: EntitySnapshot,
    method: str,
    raw_items: list[dict[str, Any]],
    *,
    url_key: str | None,
    transactional: bool,
    max_depth: int,
    allows: Allows,
    precondition: Precondition | None = None,
) -> WritePlan:
    """``entity`` comes from ``plan.access.authorize`` (its write scope checked); a nested child without write
    scope refuses the whole request, whatever else is wrong with the body. ``precondition``: the request's
    ``If-Match`` / ``If-None-Match`` (``/{alias}/{id}`` only)."""
    planner = _Planner(snapshot, method, max_depth)
    planned = [
        planner.item(
            entity,
            raw,
            index,
            f"{entity.alias}[{index}]",
            depth=0,
            covered=None,
            url_key=url_key,
            precondition=precondition,
        )
        for index, raw in enumerate(raw_items)
    ]
    items, problems, decisions = zip(*planned, strict=True) if planned else ((), (), ())
    require(child_aliases(items), allows, WRITE)
    return WritePlan(entity, method, items, problems, decisions, url_key is not None, transactional)


def child_aliases(items: Iterable[ItemPlan]) -> list[str]:
    """Every entity nested under ``items``, at any depth, in reading order."""
    return [a for item in items for c in item.children for a in (c.entity.alias, *child_aliases(c.items))]


# An item planned: its plan, the problems of the item and its children in reading order, and its own decision
# made without the database.
_Planned = tuple[ItemPlan, tuple[ErrorItem, ...], Decision]

NONE_REJECTED: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Planner:
    snapshot: Snapshot
    method: str
    max_depth: int

    def item(
        self,
        entity: EntitySnapshot,
        raw: dict[str, Any],
        index: int,
        path: str,
        *,
        depth: int,
        covered: FieldSnapshot | None,
        url_key: str | None = None,
        precondition: Precondition | None = None,
    ) -> _Planned:
        """One item and its children → the plan and the problems of the whole subtree."""
        given: dict[str, Any] = {}
        rejected: list[str] = []
        children: list[ChildrenPlan] = []
        problems: list[ErrorItem] = []  # local: filled in body order, returned as a tuple
        for name, value in raw.items():
            if name == ETAG_KEY and depth == 0 and self.method != POST:
                try:
                    precondition = precondition or item_precondition(value, path)
                except errors.ApiError as refused:
                    problems += refused.items
                continue
            target = entity.by_name.get(name)
            if target is None:
                planned, found = self._children(entity, name, value, path, depth)
                problems += found
                if planned is not None:
                    children.append(planned)
                continue
            if covered is not None and target is covered:
                continue  # filled from the parent row, whatever the client sent
            if value is None:
                given[target.column.name] = None
                continue
            try:
                given[target.column.name] = target.check(value)
            except Invalid as exc:
                rejected.append(target.column.name)
                problems.append(_invalid(exc.kind, path, target))
        key = given.get(entity.identifier.column.name)
        if url_key is not None:
            try:
                key = entity.identifier.parse(url_key)
            except ValueError:
                problems.append(errors.ENTITY_NOT_FOUND(path=entity.alias))
        item = ItemPlan(
            index,
            path,
            given,
            key,
            tuple(children),
            url_key is not None,
            frozenset(rejected) if rejected else NONE_REJECTED,
            precondition,
        )
        # The rules that hold whatever the rows are: so every problem of every item is known before any write.
        decision = decide_item(entity, self.method, item, None, covered)
        return item, (*problems, *decision.errors) if decision.errors else tuple(problems), decision

    def _children(
        self, entity: EntitySnapshot, name: str, value: Any, path: str, depth: int
    ) -> tuple[ChildrenPlan | None, tuple[ErrorItem, ...]]:
        relation = entity.relations.get(name)
        if relation is None:
            if isinstance(value, list):
                return None, (errors.RELATION_NOT_FOUND(relation=name),)
            return None, (errors.UNKNOWN_FIELD(path=path, field=name),)
        if not relation.is_editable:
            return None, (errors.RELATION_NOT_EDITABLE(relation=name),)
        child = self.snapshot.entities[relation.child_alias]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            return None, (errors.INVALID_TYPE(path=path, field=name),)
        if depth + 1 >= self.max_depth:
            return None, (errors.NESTING_TOO_DEEP(path=f"{path}.{name}", maximum=self.max_depth),)
        planned = [
            self.item(child, raw, j, f"{path}.{child.alias}[{j}]", depth=depth + 1, covered=relation.child_field)
            for j, raw in enumerate(value)
        ]
        problems = tuple(e for _, found, _ in planned for e in found)
        return ChildrenPlan(relation, child, tuple(item for item, _, _ in planned)), problems


def _invalid(kind: str, path: str, target: FieldSnapshot) -> ErrorItem:
    if kind == "type":
        return errors.INVALID_TYPE(path=path, field=target.name)
    if kind == "url":
        return errors.INVALID_URL(path=path, field=target.name)
    return errors.INVALID_VALUE(path=path, field=target.name, rules=target.rules_text)


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
