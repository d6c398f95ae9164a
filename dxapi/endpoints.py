"""HTTP endpoints of the generated API: each reads as the pipeline it runs.

    request → auth → snapshot (once) → parse → plan (+ scopes) → execute → render

Writes resolve the alias before reading the body, so an unknown alias is a 404 whatever was sent.

No business logic lives here; every stage raises a catalogued ``ApiError`` that the app renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from dxapi import errors
from dxapi.auth.oauth import TokenService
from dxapi.auth.principals import ACTIONS, DELETE, READ, WRITE, Authenticator, Principal, require
from dxapi.execute.delete import execute_delete
from dxapi.execute.read import execute_read
from dxapi.execute.write import execute_write
from dxapi.openapi import build_openapi
from dxapi.plan.build import build_read_plan, resolve_entity
from dxapi.plan.delete import build_delete_by_filter, build_delete_by_key
from dxapi.plan.types import PATCH, POST, PUT, IncludePlan, ItemPlan
from dxapi.plan.write import answer_row, build_write_plan
from dxapi.registry.reload import Registry
from dxapi.registry.snapshot import EntitySnapshot, Snapshot
from dxapi.request.body import is_transactional, parse_write_request, read_body
from dxapi.request.params import FilterTerm, ReadRequest, parse_read_request
from dxapi.responses import BASE_HEADERS, render_json
from dxapi.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a worker holds for its whole life: settings, the engine, and the snapshot registry."""

    settings: Settings
    engine: AsyncEngine
    reader: AsyncEngine  # same pool, without transaction round trips (db.reader)
    registry: Registry
    driver_pool: Any | None  # asyncpg pool for hot reads on PostgreSQL (db.create_driver_pool)
    auth: Authenticator
    tokens: TokenService
    # Rendered OpenAPI documents by scope set, each with the snapshot it shows (see openapi_document).
    openapi: dict[frozenset[str], tuple[Snapshot, bytes]] = field(default_factory=dict)


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


async def authenticate(request: Request, rt: Runtime) -> Principal:
    address = request.client.host if request.client else "unknown"
    return await rt.auth.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"), address)


def _include_aliases(includes: tuple[IncludePlan, ...]) -> list[str]:
    return [a for i in includes for a in (i.entity.alias, *_include_aliases(i.includes))]


def _child_aliases(items: Iterable[ItemPlan]) -> list[str]:
    return [a for item in items for c in item.children for a in (c.entity.alias, *_child_aliases(c.items))]


OPENAPI_DOCUMENTS = 64  # distinct scope sets whose rendered document a worker keeps


async def openapi_document(request: Request) -> Response:
    """The document of what the caller's scopes allow: no entity it holds no scope on, no operation it may not
    call. Rendered once per snapshot and scope set; a new snapshot (a version move or a re-reflection after a
    schema change) drops the documents of the old one."""
    rt = runtime(request)
    principal = await authenticate(request, rt)
    snapshot = rt.registry.current()
    cached = rt.openapi.get(principal.scopes)
    if cached is not None and cached[0] is snapshot:
        body = cached[1]
    else:
        for scopes in [s for s, (shown, _) in rt.openapi.items() if shown is not snapshot]:
            del rt.openapi[scopes]
        if len(rt.openapi) >= OPENAPI_DOCUMENTS:
            del rt.openapi[next(iter(rt.openapi))]  # the oldest: scope sets are few in practice
        body = orjson.dumps(build_openapi(snapshot, rt.settings, principal.allows))
        rt.openapi[principal.scopes] = (snapshot, body)
    return Response(body, media_type="application/json", headers=BASE_HEADERS)


async def read_collection(request: Request) -> Response:
    rt = runtime(request)
    principal = await authenticate(request, rt)
    snapshot = rt.registry.current()
    alias = request.path_params["alias"]
    # Scope first: a caller who may not read an entity learns nothing about its fields from the errors.
    require(principal, [resolve_entity(snapshot, alias).alias], READ)
    read = parse_read_request(request.query_params.multi_items(), rt.settings.max_filter_values)
    plan = build_read_plan(snapshot, alias, read, rt.settings)
    require(principal, _include_aliases(plan.includes), READ)
    items = await execute_read(rt.reader, plan, rt.driver_pool)
    return render_json({"data": items})


async def read_item(request: Request) -> Response:
    rt = runtime(request)
    principal = await authenticate(request, rt)
    snapshot = rt.registry.current()
    require(principal, [resolve_entity(snapshot, request.path_params["alias"]).alias], READ)
    read = parse_read_request(request.query_params.multi_items(), rt.settings.max_filter_values)
    _refuse_list_parameters(read, allowed_filters=False, where="on a single row")
    alias, identifier = request.path_params["alias"], request.path_params["id"]
    plan = build_read_plan(snapshot, alias, read, rt.settings, identifier=identifier)
    require(principal, _include_aliases(plan.includes), READ)
    items = await execute_read(rt.reader, plan, rt.driver_pool)
    if not items:
        raise errors.ENTITY_NOT_FOUND.error(path=alias)
    return render_json({"data": items[0]})


async def create(request: Request) -> Response:
    return await _write(request, POST)


async def update(request: Request) -> Response:
    return await _write(request, PATCH)


async def upsert(request: Request) -> Response:
    return await _write(request, PUT)


async def _write(request: Request, method: str) -> Response:
    rt = runtime(request)
    principal = await authenticate(request, rt)
    snapshot = rt.registry.current()
    entity = resolve_entity(snapshot, request.path_params["alias"])
    require(principal, [entity.alias], WRITE)
    url_key: str | None = request.path_params.get("id")
    body = await read_body(request, rt.settings.max_body_bytes)
    write = parse_write_request(
        body,
        single=url_key is not None,
        transactional=is_transactional(request.headers.get("x-is-transactional")) or url_key is not None,
        max_items=rt.settings.max_batch_items,
    )
    plan = build_write_plan(
        snapshot, entity, method, write.items, url_key=url_key, transactional=write.transactional,
        max_depth=rt.settings.max_include_depth,
    )
    children = _child_aliases(plan.items)
    require(principal, children, WRITE)  # a nested child without scope refuses it all
    outcome = await execute_write(rt.engine, plan, rt.reader if rt.reader is not rt.engine else None)
    if plan.transactional and outcome.errors:
        raise errors.ApiError(list(outcome.errors))
    saved = outcome.saved
    if not all(principal.allows(alias, READ) for alias in (entity.alias, *children)):
        # Write scope is not read scope: where the caller may not read, a saved item is its identifier.
        saved = tuple(answer_row(snapshot, entity, row, lambda alias: principal.allows(alias, READ)) for row in saved)
    status = 201 if method == POST else 200
    if plan.single:
        return render_json({"data": saved[0]}, status)
    if plan.transactional:
        return render_json({"data": saved}, status)
    if not saved:
        status = outcome.errors[0].status
    headers = {"X-Dxapi-Error-Code": outcome.errors[0].code} if outcome.errors else None
    return render_json({"data": saved, "errors": [e.as_dict() for e in outcome.errors]}, status, headers)


async def delete_item(request: Request) -> Response:
    rt = runtime(request)
    principal = await authenticate(request, rt)
    snapshot = rt.registry.current()
    entity = _deletable(snapshot, request.path_params["alias"], principal)
    plan = build_delete_by_key(entity, request.path_params["id"], rt.settings)
    await execute_delete(rt.engine, plan, _child_alias(snapshot, entity, principal))
    return Response(status_code=204, headers=BASE_HEADERS)


async def delete_collection(request: Request) -> Response:
    rt = runtime(request)
    principal = await authenticate(request, rt)
    snapshot = rt.registry.current()
    alias = request.path_params["alias"]
    entity = _deletable(snapshot, alias, principal)
    read = parse_read_request(request.query_params.multi_items(), rt.settings.max_filter_values)
    _refuse_list_parameters(read, allowed_filters=True, where="on DELETE", include=True)
    if read.filters and not principal.allows(entity.alias, READ) and not _by_identifier(entity, read.filters):
        # A blocked DELETE deletes nothing, so its 1317 would tell whether rows match a filter on values:
        # that is a read. Without read scope rows are chosen by identifier, keys the caller names itself.
        raise errors.INSUFFICIENT_SCOPE.error(alias=entity.alias, action=READ)
    plan = build_delete_by_filter(snapshot, entity, read, rt.settings)
    await execute_delete(rt.engine, plan, _child_alias(snapshot, entity, principal))
    return Response(status_code=204, headers=BASE_HEADERS)


def _refuse_list_parameters(read: ReadRequest, *, allowed_filters: bool, where: str, include: bool = False) -> None:
    """Parameters that only make sense on a list are a client mistake elsewhere; name the first one."""
    given = [
        ("filter[...]", bool(read.filters) and not allowed_filters),
        ("sort", bool(read.sort)),
        ("page[offset]", read.offset is not None),
        ("page[limit]", read.limit is not None),
        ("include", include and bool(read.include)),
    ]
    for name, present in given:
        if present:
            raise errors.QUERY_PARAMETER_NOT_ALLOWED.error(name=name, where=where)


def _deletable(snapshot: Snapshot, alias: str, principal: Principal) -> EntitySnapshot:
    """Unknown alias 404, then scope 403, then 405: only a caller who may delete learns the entity's settings."""
    entity = resolve_entity(snapshot, alias)
    require(principal, [entity.alias], DELETE)
    if not entity.config.is_deletable:
        raise errors.METHOD_NOT_ALLOWED_FOR_ENTITY.error(alias=alias)
    return entity


def _by_identifier(entity: EntitySnapshot, filters: Iterable[FilterTerm]) -> bool:
    identifier = entity.identifier.name
    return all(term.field == identifier and all(op in ("eq", "in") for op, _ in term.operations) for term in filters)


def _child_alias(snapshot: Snapshot, entity: EntitySnapshot, principal: Principal) -> Callable[[str], str | None]:
    """Table → the entity a 1317 may name for it: a child of one of ``entity``'s relations first, and only an
    entity the caller has some scope on (the others it is not told of)."""

    def name(table: str) -> str | None:
        for alias in (*(r.child_alias for r in entity.relations.values()), *sorted(snapshot.entities)):
            child = snapshot.entities.get(alias)
            if child is not None and child.table.name == table and any(principal.allows(alias, a) for a in ACTIONS):
                return alias
        return None

    return name
