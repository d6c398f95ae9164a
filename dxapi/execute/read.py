"""Executing reads: run the statements of a read plan on one connection and shape rows into API objects.

Fed by plans (``plan``) and statements (``sql``); feeds ``responses``. Database failures are translated by
``execute.dberrors``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dxapi import errors
from dxapi.execute.dberrors import database_errors
from dxapi.plan.types import IncludePlan, ReadPlan
from dxapi.sql.build import build_children, build_read

log = logging.getLogger("dxapi.execute")

# Parent keys per child query; bounded so every backend's bind-parameter limit holds.
CHILD_KEYS_PER_QUERY = 2000


async def execute_read(engine: AsyncEngine, plan: ReadPlan) -> list[dict[str, Any]]:
    """Rows of the plan's page with their included children; for ``single`` plans, [] or [one]."""
    async with database_errors(), engine.connect() as conn:
        rows = (await conn.execute(build_read(plan))).all()
        if plan.single and len(rows) > 1:
            log.error("identifier of `%s` is not unique; refusing to pick one row", plan.entity.alias)
            raise errors.INTERNAL_ERROR.error()
        items = [plan.entity.render_row(row) for row in rows]
        for include in plan.includes:
            await _attach(conn, include, items)
    return items


async def _attach(conn: AsyncConnection, include: IncludePlan, parents: list[dict[str, Any]]) -> None:
    """Fill ``parent[relation]`` for every parent with one query per level (chunked for huge pages)."""
    relation = include.relation
    parent_name = relation.parent_field.name
    child_name = relation.child_field.name
    keys = list(dict.fromkeys(p[parent_name] for p in parents if p[parent_name] is not None))
    children: list[dict[str, Any]] = []
    for start in range(0, len(keys), CHILD_KEYS_PER_QUERY):
        chunk = [relation.parent_field.parse(k) if isinstance(k, str) else k
                 for k in keys[start:start + CHILD_KEYS_PER_QUERY]]
        result = await conn.execute(build_children(include, chunk))
        children.extend(include.entity.render_row(row) for row in result)
    by_key: dict[Any, list[dict[str, Any]]] = {}
    for child in children:
        by_key.setdefault(child[child_name], []).append(child)
    for parent in parents:
        parent[relation.name] = by_key.get(parent[parent_name], [])
    for nested in include.includes:
        await _attach(conn, nested, children)
