"""Health endpoints: ``/health/live`` (the process answers) and ``/health/ready`` (a snapshot is loaded and
the database answers), for load balancers and orchestrators.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from dxapi.endpoints import runtime
from dxapi.responses import render_json

READY_TIMEOUT_SECONDS = 2.0


async def live(request: Request) -> Response:
    return render_json({"status": "ok"})


async def ready(request: Request) -> Response:
    rt = runtime(request)
    problems: list[str] = []
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), rt.reader.connect() as conn:
            await conn.execute(select(1))
    except Exception as exc:
        problems.append(f"database not reachable ({type(exc).__name__})")
    if not rt.registry.loaded:
        problems.append("configuration not loaded yet")
    if rt.registry.last_error:
        problems.append(rt.registry.last_error)
    snapshot = rt.registry.current()
    document = {
        "status": "unavailable" if problems else "ok",
        "snapshotVersion": snapshot.version,
        "listening": rt.registry.listening,
        "problems": problems,
        "unavailableEntities": {alias: list(found) for alias, found in snapshot.unavailable.items()},
    }
    return render_json(document, 503 if problems else 200)
