"""Health endpoints: ``/health/live`` (the process answers) and ``/health/ready`` (a snapshot is loaded and
the database answers), for load balancers and orchestrators.

Readiness answers everyone with the status, the loaded ``snapshotVersion`` and counts; it names no entity,
table or column to a caller without credentials. An operator — any valid bearer token or API key — also gets
the problems and, for the entities its scopes cover (read, write or delete), why each one is unavailable.
Invalid credentials are no reason to fail a probe: they get the anonymous answer, and so do credentials that
cannot be checked while the database is down.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool
from starlette.requests import Request
from starlette.responses import Response

from dxapi import errors
from dxapi.auth.scopes import ACTIONS, Principal
from dxapi.endpoints import Runtime, runtime
from dxapi.responses import render_json

READY_TIMEOUT_SECONDS = 2.0


async def live(request: Request) -> Response:
    return render_json({"status": "ok"})


async def ready(request: Request) -> Response:
    rt = runtime(request)
    # One deadline for the whole probe, the caller's credentials included: a hung database must not cost it
    # twice. (A check cut by the deadline drops its connection at once, db._drop_on_silence.)
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_SECONDS
    operator = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            operator = await _operator(request, rt)
    problems: list[str] = []
    try:
        # The control pool (app._lifespan): a request pool busy with slow requests is not a dead database.
        async with asyncio.timeout_at(deadline), rt.control.connect() as conn:
            await conn.execute(select(1))
    except (TimeoutError, SQLAlchemyError, OSError) as exc:  # slow, refusing (as dberrors sees it), or unreachable
        problems.append(f"database unreachable ({type(exc).__name__})")
    if _saturated(rt):
        problems.append("pool saturated: every request connection is in use")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            await rt.registry.settle()  # a request just met a vanished column: report what it found
    if not rt.registry.loaded:
        problems.append("configuration not loaded yet")
    elif rt.registry.stale:
        problems.append("configuration stale: the configuration version could not be checked lately")
    if rt.registry.last_error:
        problems.append(rt.registry.last_error)
    snapshot = rt.registry.current()
    document: dict[str, Any] = {
        "status": "unavailable" if problems else "ok",
        "snapshotVersion": snapshot.version,
        "unavailableEntityCount": len(snapshot.unavailable),
        "problemCount": len(problems),
    }
    if operator is not None:
        document["listening"] = rt.registry.listening
        if rt.replicas is not None:  # out is no problem of readiness: the primary answers their reads
            document["replicas"] = {r.name: r.problem or "in" for r in rt.replicas.replicas}
        document["problems"] = problems
        document["unavailableEntities"] = {
            alias: list(found)
            for alias, found in snapshot.unavailable.items()
            if any(operator.allows(alias, action) for action in ACTIONS)
        }
    return render_json(document, 503 if problems else 200)


def _saturated(rt: Runtime) -> bool:
    """Every connection of the request pool is checked out (SQLite opens one per request: never)."""
    pool = rt.engine.pool
    if isinstance(pool, QueuePool) and pool.checkedout() >= pool.size():
        return True
    driver = rt.driver_pool
    if driver is None:
        return False
    return bool(driver.pool.get_size() >= driver.pool.get_max_size() and driver.pool.get_idle_size() == 0)


async def _operator(request: Request, rt: Runtime) -> Principal | None:
    authorization, api_key = request.headers.get("authorization"), request.headers.get("x-api-key")
    if not authorization and not api_key:
        return None
    try:
        return await rt.auth.authenticate(authorization, api_key)
    except errors.ApiError:  # invalid credentials, or the database is down: answer as to a probe
        return None
