"""HTTP endpoints of the generated API: each reads as the pipeline it runs.

    request → snapshot (once) → parse → plan → execute → render

No business logic lives here; every stage raises a catalogued ``ApiError`` that the app renders.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from dxapi import errors
from dxapi.execute import execute_read
from dxapi.plan.build import build_read_plan
from dxapi.registry.reload import Registry
from dxapi.request.params import parse_read_request
from dxapi.responses import render_json
from dxapi.settings import Settings


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a worker holds for its whole life: settings, the engine, and the snapshot registry."""

    settings: Settings
    engine: AsyncEngine
    registry: Registry


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


async def read_collection(request: Request) -> Response:
    rt = runtime(request)
    snapshot = rt.registry.current()
    read = parse_read_request(request.query_params.multi_items(), rt.settings.max_filter_values)
    plan = build_read_plan(snapshot, request.path_params["alias"], read, rt.settings)
    items = await execute_read(rt.engine, plan)
    return render_json({"data": items})


async def read_item(request: Request) -> Response:
    rt = runtime(request)
    snapshot = rt.registry.current()
    read = parse_read_request(request.query_params.multi_items(), rt.settings.max_filter_values)
    if read.filters or read.sort or read.offset is not None or read.limit is not None:
        # Only `include` makes sense on a single row; anything else is a client mistake worth naming.
        raise errors.QUERY_PARAMETER_UNKNOWN.error(name="filter/sort/page on a single entity")
    alias, identifier = request.path_params["alias"], request.path_params["id"]
    plan = build_read_plan(snapshot, alias, read, rt.settings, identifier=identifier)
    items = await execute_read(rt.engine, plan)
    if not items:
        raise errors.ENTITY_NOT_FOUND.error(path=alias)
    return render_json({"data": items[0]})
