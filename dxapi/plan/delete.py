"""Planning deletes: the request → a frozen ``DeletePlan`` (one row by key, or every row matching filters).

Fed by ``endpoints`` (the URL identifier, or the parsed query string) and the snapshot; feeds
``execute.delete``. Pure. Filters resolve exactly as a list read resolves them (``plan.build``), so a delete
by filter removes the rows the same filter lists::

    build_delete_by_filter(snapshot, entity, parse_read_request([("filter[p.code]", "A1")], 100), settings, allows)
    # → DeletePlan(entity, key=None, conditions=(Condition(code, "eq", "A1"),), max_rows=10000)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dxapi import errors
from dxapi.plan.access import ACTIONS, DELETE, READ, Allows, authorize
from dxapi.plan.build import build_read_plan
from dxapi.plan.types import DeletePlan
from dxapi.preconditions import Precondition
from dxapi.registry.snapshot import EntitySnapshot, Snapshot
from dxapi.request.params import FilterGroup, FilterTerm, ReadRequest
from dxapi.settings import Settings


def deletable_entity(snapshot: Snapshot, alias: str, allows: Allows) -> EntitySnapshot:
    """Unknown alias 404, then scope 403, then 405: only a caller who may delete learns the entity's settings."""
    entity = authorize(snapshot, alias, allows, DELETE)
    if not entity.config.is_deletable:
        raise errors.METHOD_NOT_ALLOWED_FOR_ENTITY.error(alias=alias)
    return entity


def build_delete_by_key(
    entity: EntitySnapshot, identifier: str, settings: Settings, precondition: Precondition | None = None
) -> DeletePlan:
    """``DELETE /{alias}/{id}``: a value that cannot be an identifier names no row (1303, as a miss)."""
    try:
        key = entity.identifier.parse(identifier)
    except ValueError:
        raise errors.ENTITY_NOT_FOUND.error(path=entity.alias) from None
    return DeletePlan(entity, key, (), settings.max_batch_items, precondition)


def build_delete_by_filter(
    snapshot: Snapshot, entity: EntitySnapshot, read: ReadRequest, settings: Settings, allows: Allows
) -> DeletePlan:
    """``DELETE /{alias}?filter…``: a filter is required (2014), never "every row"."""
    if read.filters and not allows(entity.alias, READ) and not _by_identifier(entity, read.filters):
        # A blocked DELETE deletes nothing, so its 1317 would tell whether rows match a filter on values:
        # that is a read. Without read scope rows are chosen by identifier, keys the caller names itself.
        raise errors.INSUFFICIENT_SCOPE.error(alias=entity.alias, action=READ)
    if not read.filters:
        raise errors.DELETE_NEEDS_FILTER.error(alias=entity.alias)
    plan = build_read_plan(snapshot, entity, read, settings, allows=allows)
    return DeletePlan(entity, None, plan.conditions, settings.max_batch_items)


def _by_identifier(entity: EntitySnapshot, filters: Iterable[FilterTerm | FilterGroup]) -> bool:
    """Only ``eq``/``in`` on the entity's own identifier: no group, no relation filter (which reads another
    entity's values), however its related field is named."""
    identifier = entity.identifier.name
    return all(
        isinstance(term, FilterTerm)
        and term.field == identifier
        and term.prefix not in entity.relations
        and all(op in ("eq", "in") for op, _ in term.operations)
        for term in filters
    )


def nameable_child(snapshot: Snapshot, entity: EntitySnapshot, allows: Allows) -> Callable[[str], str | None]:
    """Table → the entity a 1317 may name for it: a child of one of ``entity``'s relations first, and only an
    entity the caller has some scope on (the others it is not told of)."""

    def name(table: str) -> str | None:
        for alias in (*(r.child_alias for r in entity.relations.values()), *sorted(snapshot.entities)):
            child = snapshot.entities.get(alias)
            if child is not None and child.table.name == table and any(allows(alias, a) for a in ACTIONS):
                return alias
        return None

    return name
