"""Plans: what a request will do, resolved against one snapshot, before any SQL exists.

Produced by ``plan.build`` (reads), ``plan.write`` (writes) and ``plan.delete`` (deletes); consumed by
``plan.decide``, ``sql.build`` and ``execute``. All frozen, built once, never changed afterwards. Every name
in a plan is already a ``FieldSnapshot``/``RelationSnapshot`` (and so a reflected ``Column``); every value is
already parsed to the Python type its column binds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dxapi.errors import ErrorItem
from dxapi.preconditions import Precondition
from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, RelationSnapshot


@dataclass(frozen=True, slots=True)
class Condition:
    field: FieldSnapshot
    operator: str  # one of request.params.OPERATORS' values
    value: Any


@dataclass(frozen=True, slots=True)
class Group:
    """``filter[or]``/``[and]``/``[not]``: ``not`` negates the AND of its items, as the exact complement (a row
    it does not match is a row the items match, NULLs included: SQL's unknown never leaks into an answer)."""

    operator: str  # "and", "or" or "not"
    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class Exists:
    """A relation filter: the rows with at least one related row (of ``relation``) matching all ``items``."""

    relation: RelationSnapshot
    entity: EntitySnapshot  # the related entity, whose fields ``items`` name
    items: tuple[Predicate, ...]


# What a filter becomes in a plan: a comparison of one field, a boolean group, or a relation filter.
Predicate = Condition | Group | Exists


@dataclass(frozen=True, slots=True)
class OrderKey:
    field: FieldSnapshot
    descending: bool


@dataclass(frozen=True, slots=True)
class IncludePlan:
    """Children of one relation, fetched in one query per level for all parents of the level above."""

    relation: RelationSnapshot
    entity: EntitySnapshot
    includes: tuple[IncludePlan, ...]
    conditions: tuple[Predicate, ...] = ()  # `filter[include.…]`: which embedded rows are fetched
    # ``fields[...]`` of this relation: the fields selected (entity order; None: all) and, of those, the ones
    # selected only to attach rows (the relation's key, a nested include's), never answered.
    fields: tuple[FieldSnapshot, ...] | None = None
    hidden: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CursorPlan:
    """Keyset paging (``page[cursor]``): the rows after ``after`` in the plan's order, which always ends with the
    identifier, so no two rows share a position and none is skipped or repeated however many share a value."""

    # Per order key, the bound value of the previous page's last row (None: SQL NULL); None for the first page.
    after: tuple[Any, ...] | None
    fingerprint: str  # of the entity and order: what the next page's cursor is made for (``plan.cursor``)


@dataclass(frozen=True, slots=True)
class CountPlan:
    """``Prefer: count=…`` of a list: the total of the rows matching its conditions (not of the page)."""

    estimated: bool  # count=estimated: the planner's estimate where a backend has one
    exact_below: int  # an estimate below this is replaced by an exact count (``DXAPI_COUNT_EXACT_BELOW``)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    entity: EntitySnapshot
    conditions: tuple[Predicate, ...]  # AND; a by-id read's last one is the identifier's `eq`
    order: tuple[OrderKey, ...]
    offset: int
    limit: int
    includes: tuple[IncludePlan, ...]
    single: bool  # GET /{alias}/{id}: answer one object or 404
    cursor: CursorPlan | None = None  # keyset paging instead of ``offset``
    # ``fields[{alias}]``: the fields selected (entity order; None: all) and, of those, the ones selected only
    # for the next cursor or to attach included rows, never answered.
    fields: tuple[FieldSnapshot, ...] | None = None
    hidden: tuple[str, ...] = ()
    count: CountPlan | None = None


POST, PATCH, PUT = "POST", "PATCH", "PUT"
INSERT, UPDATE = "insert", "update"


@dataclass(frozen=True, slots=True)
class ItemPlan:
    """One body item, checked against its entity: ``products[3]``, nested ``products[3].stocks[0]``."""

    index: int
    path: str
    given: Mapping[str, Any]  # column name → bound value, for the valid fields in the body (None = null)
    key: Any  # the identifier's bound value (from the URL when ``by_id``), or None when absent
    children: tuple[ChildrenPlan, ...]
    by_id: bool  # the identifier came from the URL (/{alias}/{id})
    rejected: frozenset[str]  # column names sent with a value refused as invalid (never also "required")
    # What the row must be like at the time of the write (If-Match / If-None-Match, an item's `@etag`); root
    # items only, checked under a row lock by the executor.
    precondition: Precondition | None = None


@dataclass(frozen=True, slots=True)
class ChildrenPlan:
    """The items under one relation name of one parent item, written after the parent."""

    relation: RelationSnapshot
    entity: EntitySnapshot
    items: tuple[ItemPlan, ...]


@dataclass(frozen=True, slots=True)
class Action:
    """What the executor does for one item: insert or update these column values (``key``: the identifier)."""

    kind: str
    values: Mapping[str, Any]
    key: Any


@dataclass(frozen=True, slots=True)
class Decision:
    """One item's verdict: an action (None: refused, or PUT not decidable yet) and its problems."""

    action: Action | None
    errors: tuple[ErrorItem, ...] = ()


@dataclass(frozen=True, slots=True)
class WritePlan:
    entity: EntitySnapshot
    method: str  # POST, PATCH or PUT
    items: tuple[ItemPlan, ...]
    # Per root item (same order as ``items``): its problems and its children's, found without the database.
    problems: tuple[tuple[ErrorItem, ...], ...]
    # Per root item: ``plan.decide``'s decision without the database (final for POST and PATCH, open for PUT).
    decisions: tuple[Decision, ...]
    single: bool  # /{alias}/{id}: answer one object
    transactional: bool

    @property
    def has_problems(self) -> bool:
        return any(self.problems)


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """Rows to delete together, or none at all: one by ``key`` (/{alias}/{id}) or all matching ``conditions``."""

    entity: EntitySnapshot
    key: Any  # the identifier's bound value, or None for a delete by filter
    conditions: tuple[Predicate, ...]
    max_rows: int  # more matching rows than this → 2013, nothing deleted
    precondition: Precondition | None = None  # If-Match / If-None-Match of a delete by key
