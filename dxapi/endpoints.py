"""HTTP endpoints of the generated API: each reads as the pipeline it runs.

    request → auth → rate limit → snapshot (once) → parse → plan (+ scopes) → execute → render

Writes resolve the alias before reading the body, so an unknown alias is a 404 whatever was sent.

No business logic lives here; every stage raises a catalogued ``ApiError`` that the app renders.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from dxapi import errors, observe
from dxapi.auth.oauth import TokenService
from dxapi.auth.principals import Authenticator, Principal
from dxapi.db import DriverPool
from dxapi.execute.delete import ChildAlias, execute_delete
from dxapi.execute.outcome import WriteOutcome
from dxapi.execute.read import Page, execute_page
from dxapi.execute.write import execute_write
from dxapi.feed.read import changes_page
from dxapi.idempotency import Keeper, answered, keeper_for
from dxapi.limits.counters import Counters
from dxapi.limits.quota import Quota, with_limit_headers
from dxapi.openapi import build_openapi
from dxapi.plan.access import READ, WRITE, authorize
from dxapi.plan.build import build_read_plan
from dxapi.plan.cursor import next_cursor
from dxapi.plan.delete import build_delete_by_filter, build_delete_by_key, deletable_entity, nameable_child
from dxapi.plan.types import PATCH, POST, PUT, DeletePlan, ReadPlan, WritePlan
from dxapi.plan.write import answer_row, build_write_plan, child_aliases
from dxapi.preconditions import Precondition, not_modified, request_precondition, row_tag
from dxapi.registry.reload import Registry
from dxapi.registry.snapshot import Snapshot
from dxapi.replicas import Read, Replicas, T
from dxapi.request.accept import JSON, parse_accept
from dxapi.request.body import is_transactional, parse_write_request, read_body
from dxapi.request.changes import parse_changes_request
from dxapi.request.params import (
    CURSOR,
    link_with,
    parse_read_request,
    refuse_export_parameters,
    refuse_list_parameters,
)
from dxapi.request.prefer import parse_prefer_count
from dxapi.responses import BASE_HEADERS, render_errors, render_json
from dxapi.settings import Settings
from dxapi.streaming import start_export


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a worker holds for its whole life: settings, the engine, and the snapshot registry."""

    settings: Settings
    engine: AsyncEngine  # for writes (db.writer: SQLite takes its write lock at BEGIN)
    reader: AsyncEngine  # same pool, without transaction round trips (db.reader)
    registry: Registry
    driver_pool: DriverPool | None  # asyncpg pool for hot reads on PostgreSQL (db.create_driver_pool)
    auth: Authenticator
    tokens: TokenService
    control: AsyncEngine  # a small pool of its own: readiness, configuration reloads, principal checks
    counters: Counters  # the shared store of rate limits and throttles (limits.counters)
    quota: Quota  # the rate limits of data requests (limits.quota)
    replicas: Replicas | None = None  # DXAPI_READ_REPLICA_URLS: where reads may go instead (replicas.py)
    # Rendered OpenAPI documents by scope set, each with the snapshot it shows (see openapi_document).
    openapi: dict[frozenset[str], tuple[Snapshot, bytes]] = field(default_factory=dict)


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


def _read(rt: Runtime, principal: Principal, run: Read[T]) -> Awaitable[T]:
    """A read on the primary's reader and driver pool, or on a replica's (``replicas.Replicas.read``). Not a
    coroutine itself: without replicas the read costs no frame more."""
    if rt.replicas is None:
        return run(rt.reader, rt.driver_pool)
    return rt.replicas.read(principal.subject, run)


async def authenticate(request: Request, rt: Runtime) -> Principal:
    address = request.client.host if request.client else "unknown"
    principal = await rt.auth.authenticate(
        request.headers.get("authorization"), request.headers.get("x-api-key"), address
    )
    observe.authenticated(principal.subject)
    return principal


async def admitted(request: Request, rt: Runtime) -> Principal:
    """The authenticated principal, counted against its rate limit (429 beyond it)."""
    principal = await authenticate(request, rt)
    await rt.quota.admit(request, principal)
    return principal


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


@with_limit_headers
async def read_collection(request: Request) -> Response:
    rt = runtime(request)
    principal = await admitted(request, rt)
    snapshot = rt.registry.current()
    entity = authorize(snapshot, request.path_params["alias"], principal.allows, READ)
    observe.entity(entity.alias)
    await rt.quota.admit_entity(request, principal, entity.alias)
    media_type = parse_accept(request.headers.get("accept"))
    read = parse_read_request(request.query_params.multi_items(), rt.settings.max_filter_values)
    if media_type != JSON:
        refuse_export_parameters(read, media_type)
        plan = build_read_plan(snapshot, entity, read, rt.settings, allows=principal.allows, export=True)
        return await _read(rt, principal, lambda reader, pool: start_export(reader, plan, pool, media_type))
    count = parse_prefer_count(request.headers.getlist("prefer"))
    plan = build_read_plan(snapshot, entity, read, rt.settings, allows=principal.allows, count=count)
    observe.lap("plan")
    page = await _read(rt, principal, lambda reader, pool: execute_page(reader, plan, pool))
    observe.read(len(page.items))
    if plan.cursor is None and page.total is None:
        return render_json({"data": page.items})
    document: dict[str, object] = {"data": page.items}
    if plan.cursor is not None:
        # A keyset list (page[cursor]) links the page after this one, with the caller's other parameters; the
        # last page links none.
        links = {}
        if page.more and page.last is not None:
            cursor = next_cursor(plan, page.last)
            links["next"] = link_with(request.url.path, request.query_params.multi_items(), CURSOR, cursor)
        document["links"] = links
    if page.total is None:
        return render_json(document)
    document["meta"] = _count_meta(plan, page)
    return render_json(document, headers={"Preference-Applied": f"count={count}"})


def _count_meta(plan: ReadPlan, page: Page) -> dict[str, object]:
    """``meta`` of a counted list; ``totalEstimated`` answers ``count=estimated`` only (whether it is one)."""
    if plan.count is not None and plan.count.estimated:
        return {"total": page.total, "totalEstimated": page.estimated}
    return {"total": page.total}


@with_limit_headers
async def read_item(request: Request) -> Response:
    rt = runtime(request)
    principal = await admitted(request, rt)
    snapshot = rt.registry.current()
    entity = authorize(snapshot, request.path_params["alias"], principal.allows, READ)
    observe.entity(entity.alias)
    await rt.quota.admit_entity(request, principal, entity.alias)
    read = parse_read_request(request.query_params.multi_items(), rt.settings.max_filter_values)
    refuse_list_parameters(read, filters=True, include=False, where="on a single row")
    plan = build_read_plan(
        snapshot, entity, read, rt.settings, allows=principal.allows, identifier=request.path_params["id"]
    )
    precondition = request_precondition(request.headers)
    observe.lap("plan")
    page = await _read(rt, principal, lambda reader, pool: execute_page(reader, plan, pool))
    observe.read(len(page.items))
    if page.last is None:
        raise errors.ENTITY_NOT_FOUND.error(path=entity.alias)
    # The whole row's tag, also under fields[...]: the one a conditional write compares with.
    tag = row_tag(entity, page.last)
    if not_modified(precondition, tag):
        return Response(status_code=304, headers={**BASE_HEADERS, "ETag": tag})
    return render_json({"data": page.items[0]}, headers={"ETag": tag})


@with_limit_headers
async def read_changes(request: Request) -> Response:
    """The change feed (DESIGN §4b): what changed after the client's cursor, deletes included."""
    rt = runtime(request)
    principal = await admitted(request, rt)
    snapshot = rt.registry.current()
    entity = authorize(snapshot, request.path_params["alias"], principal.allows, READ)
    observe.entity(entity.alias)
    await rt.quota.admit_entity(request, principal, entity.alias)
    if not entity.config.change_feed:
        raise errors.CHANGES_NOT_ENABLED.error(alias=entity.alias)
    since, limit = parse_changes_request(
        request.query_params.multi_items(), rt.settings.default_page_limit, rt.settings.max_page_limit
    )
    observe.lap("plan")
    page = await _read(rt, principal, lambda reader, _pool: changes_page(reader, entity, since, limit))
    observe.read(len(page.data))
    observe.feed_lag(page.lag)
    # Nothing handed out yet more is committed: held back behind a running transaction (or, on MariaDB, the
    # newest second). Asking again at once would only spin.
    wait = {"Retry-After": "1"} if page.has_more and not page.data else None
    return render_json({"data": page.data, "meta": {"cursor": page.cursor, "hasMore": page.has_more}}, headers=wait)


@with_limit_headers
async def create(request: Request) -> Response:
    return await _write(request, POST)


@with_limit_headers
async def update(request: Request) -> Response:
    return await _write(request, PATCH)


@with_limit_headers
async def upsert(request: Request) -> Response:
    return await _write(request, PUT)


async def _write(request: Request, method: str) -> Response:
    rt = runtime(request)
    principal = await admitted(request, rt)
    snapshot = rt.registry.current()
    entity = authorize(snapshot, request.path_params["alias"], principal.allows, WRITE)
    observe.entity(entity.alias)
    await rt.quota.admit_entity(request, principal, entity.alias)
    url_key: str | None = request.path_params.get("id")
    precondition = _precondition(request, url_key)
    body = await read_body(request, rt.settings.max_body_bytes)  # after the alias: an unknown one is 404 anyway
    keeper = keeper_for(request, principal.subject, body)
    write = parse_write_request(
        body,
        single=url_key is not None,
        transactional=is_transactional(request.headers.get("x-is-transactional")) or url_key is not None,
        max_items=rt.settings.max_batch_items,
    )
    plan = build_write_plan(
        snapshot,
        entity,
        method,
        write.items,
        url_key=url_key,
        transactional=write.transactional,
        max_depth=rt.settings.max_include_depth,
        allows=principal.allows,
        precondition=precondition,
    )
    observe.lap("plan")

    def answer(outcome: WriteOutcome) -> Response:
        observe.wrote(len(outcome.saved), len(write.items))
        if plan.transactional and outcome.errors:
            return render_errors(errors.ApiError(list(outcome.errors)))
        return _write_answer(snapshot, plan, outcome, principal, 201 if method == POST else 200)

    response = await answered(rt.engine, keeper, lambda: execute_write(rt.engine, plan, rt.driver_pool, keeper), answer)
    if rt.replicas is not None and response.status_code < 400:  # its principal's reads now wait for it
        await rt.replicas.wrote(principal.subject)
    return response


def _precondition(request: Request, url_key: str | None) -> Precondition | None:
    """``If-Match`` / ``If-None-Match`` of a write: a single row's only (a collection item sends ``@etag``)."""
    precondition = request_precondition(request.headers)
    if precondition is not None and url_key is None:
        header = "If-Match" if precondition.match is not None else "If-None-Match"
        raise errors.PRECONDITION_NOT_SUPPORTED.error(header=header)
    return precondition


def _write_answer(
    snapshot: Snapshot, plan: WritePlan, outcome: WriteOutcome, principal: Principal, status: int
) -> Response:
    saved = outcome.saved
    # A single row's answer carries its new tag (computed from every field, whatever the caller may read).
    tag = {"ETag": row_tag(plan.entity, saved[0])} if plan.single and saved else None
    readable = [plan.entity.alias, *child_aliases(plan.items)]
    if not all(principal.allows(alias, READ) for alias in readable):
        # Write scope is not read scope: where the caller may not read, a saved item is its identifier.
        saved = tuple(answer_row(snapshot, plan.entity, row, lambda a: principal.allows(a, READ)) for row in saved)
    if plan.single:
        return render_json({"data": saved[0]}, status, tag)
    if plan.transactional:
        return render_json({"data": saved}, status)
    if not saved:
        status = outcome.errors[0].status
    headers = {"X-Dxapi-Error-Code": outcome.errors[0].code} if outcome.errors else None
    return render_json({"data": saved, "errors": [e.as_dict() for e in outcome.errors]}, status, headers)


@with_limit_headers
async def delete_item(request: Request) -> Response:
    rt = runtime(request)
    principal = await admitted(request, rt)
    snapshot = rt.registry.current()
    entity = deletable_entity(snapshot, request.path_params["alias"], principal.allows)
    observe.entity(entity.alias)
    await rt.quota.admit_entity(request, principal, entity.alias)
    precondition = request_precondition(request.headers)
    keeper = keeper_for(request, principal.subject, b"")
    plan = build_delete_by_key(entity, request.path_params["id"], rt.settings, precondition)
    return await _delete(rt, principal, plan, nameable_child(snapshot, entity, principal.allows), keeper)


@with_limit_headers
async def delete_collection(request: Request) -> Response:
    rt = runtime(request)
    principal = await admitted(request, rt)
    snapshot = rt.registry.current()
    entity = deletable_entity(snapshot, request.path_params["alias"], principal.allows)
    observe.entity(entity.alias)
    await rt.quota.admit_entity(request, principal, entity.alias)
    read = parse_read_request(request.query_params.multi_items(), rt.settings.max_filter_values)
    refuse_list_parameters(read, filters=False, include=True, where="on DELETE")
    _precondition(request, None)
    keeper = keeper_for(request, principal.subject, b"")
    plan = build_delete_by_filter(snapshot, entity, read, rt.settings, principal.allows)
    return await _delete(rt, principal, plan, nameable_child(snapshot, entity, principal.allows), keeper)


async def _delete(
    rt: Runtime, principal: Principal, plan: DeletePlan, child_alias: ChildAlias, keeper: Keeper | None
) -> Response:
    response = await answered(
        rt.engine,
        keeper,
        lambda: execute_delete(rt.engine, plan, child_alias, keeper),
        _deleted,
    )
    if rt.replicas is not None and response.status_code < 400:
        await rt.replicas.wrote(principal.subject)
    return response


def _deleted(_: None) -> Response:
    observe.lap("db")
    return Response(status_code=204, headers=BASE_HEADERS)
