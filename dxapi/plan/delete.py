"""Planning deletes: the request → a frozen ``DeletePlan`` (one row by key, or every row matching filters).

Fed by ``endpoints`` (the URL identifier, or the parsed query string) and the snapshot; feeds
``execute.delete``. Pure. Filters resolve exactly as a list read resolves them (``plan.build``), so a delete
by filter removes the rows the same filter lists::

    build_delete_by_filter(snapshot, entity, parse_read_request([("filter[p.code]", "A1")], 100), settings)
    # → DeletePlan(entity, key=None, conditions=(Condition(code, "eq", "A1"),), max_rows=10000)
"""

from __future__ import annotations

from dxapi import errors
from dxapi.plan.build import build_read_plan
from dxapi.plan.types import DeletePlan
from dxapi.registry.snapshot import EntitySnapshot, Snapshot
from dxapi.request.params import ReadRequest
from dxapi.settings import Settings


def build_delete_by_key(entity: EntitySnapshot, identifier: str, settings: Settings) -> DeletePlan:
    """``DELETE /{alias}/{id}``: a value that cannot be an identifier names no row (1303, as a miss)."""
    try:
        key = entity.identifier.parse(identifier)
    except ValueError:
        raise errors.ENTITY_NOT_FOUND.error(path=entity.alias) from None
    return DeletePlan(entity, key, (), settings.max_batch_items)


def build_delete_by_filter(
    snapshot: Snapshot, entity: EntitySnapshot, read: ReadRequest, settings: Settings
) -> DeletePlan:
    """``DELETE /{alias}?filter…``: a filter is required (2014), never "every row"."""
    if not read.filters:
        raise errors.DELETE_NEEDS_FILTER.error(alias=entity.alias)
    plan = build_read_plan(snapshot, entity.alias, read, settings)
    return DeletePlan(entity, None, plan.conditions, settings.max_batch_items)
