"""Plans: what a request will do, resolved against one snapshot, before any SQL exists.

Produced by ``plan.build``; consumed by ``sql.build`` and ``execute``. Every name in a plan is already a
``FieldSnapshot``/``RelationSnapshot`` (and so a reflected ``Column``); every value is already parsed to the
Python type its column binds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dxapi.registry.snapshot import EntitySnapshot, FieldSnapshot, RelationSnapshot


@dataclass(frozen=True, slots=True)
class Condition:
    field: FieldSnapshot
    operator: str  # one of request.params.OPERATORS' values
    value: Any


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


@dataclass(frozen=True, slots=True)
class ReadPlan:
    entity: EntitySnapshot
    conditions: tuple[Condition, ...]
    order: tuple[OrderKey, ...]
    offset: int
    limit: int
    includes: tuple[IncludePlan, ...]
    single: bool  # GET /{alias}/{id}: answer one object or 404
