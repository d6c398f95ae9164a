"""Scopes at planning time: which entities a request may touch, checked where the plan meets them.

Fed by the principal (``auth.Principal.allows``) and the snapshot; used by every planner (``plan.build``,
``plan.write``, ``plan.delete``), so endpoints never check a scope themselves. The root entity is checked as
soon as its alias is resolved — before any other planning error, so a caller without the scope learns
nothing about the entity's fields — and included or nested entities as the planner reaches them::

    entity = authorize(snapshot, "products", principal.allows, READ)   # 404 / 503 / 403, in that order
    require(["stocks", "tax-rates"], principal.allows, READ)           # 403 for the first one not allowed
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dxapi import errors
from dxapi.auth.scopes import ACTIONS, DELETE, READ, WRITE
from dxapi.registry.snapshot import EntitySnapshot, Snapshot

__all__ = ["ACTIONS", "DELETE", "READ", "WRITE", "Allows", "authorize", "require", "resolve_entity"]

Allows = Callable[[str, str], bool]  # (alias, action) → may the caller do it


def resolve_entity(snapshot: Snapshot, alias: str) -> EntitySnapshot:
    """The active entity behind ``alias``: 404 ``007`` if none, 503 ``5003`` if its configuration is broken."""
    entity = snapshot.entities.get(alias)
    if entity is None:
        if alias in snapshot.unavailable:
            raise errors.ENTITY_UNAVAILABLE.error(alias=alias)
        raise errors.NOT_FOUND.error()
    return entity


def authorize(snapshot: Snapshot, alias: str, allows: Allows, action: str) -> EntitySnapshot:
    entity = resolve_entity(snapshot, alias)
    require([entity.alias], allows, action)
    return entity


def require(aliases: Iterable[str], allows: Allows, action: str) -> None:
    """Refuse the whole request (403) if any entity it touches is outside the caller's scopes."""
    for alias in dict.fromkeys(aliases):
        if not allows(alias, action):
            raise errors.INSUFFICIENT_SCOPE.error(alias=alias, action=action)
