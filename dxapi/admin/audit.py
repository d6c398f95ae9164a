"""The audit log (list, one entry's diff, revert) and the configuration file (export, import).

A revert and an import go through ``store.save_entities`` like every save: all or nothing, each problem shown.
Fed by ``dx_audit`` and uploaded files; feeds ``store``.
"""

from __future__ import annotations

import difflib
from typing import Any

import orjson
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dxapi.admin.pages import (
    HEADERS,
    engine,
    fetch_rows,
    form_fields,
    page,
    render,
    save_configs,
)
from dxapi.admin.sessions import AdminUser
from dxapi.registry.model import ConfigError
from dxapi.registry.store import export_entities, parse_import
from dxapi.registry.tables import dx_audit

# dx_audit.id is a 32-bit integer on PostgreSQL: a larger id in the path names no entry (and must not reach
# the driver, which refuses it).
MAX_AUDIT_ID = 2**31 - 1


@page()
async def audit_page(request: Request, user: AdminUser) -> Response:
    rows = await fetch_rows(
        request,
        select(dx_audit.c.id, dx_audit.c.at, dx_audit.c.actor, dx_audit.c.action, dx_audit.c.table_alias)
        .order_by(dx_audit.c.id.desc())
        .limit(500),
    )
    return render(request, "audit.html", user, entries=rows)


def _pretty(text: str | None) -> list[str]:
    if text is None:
        return []
    return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()


async def _audit_row(request: Request) -> Any | None:
    entry_id = int(request.path_params["id"])
    if entry_id > MAX_AUDIT_ID:
        return None
    rows = await fetch_rows(request, select(dx_audit).where(dx_audit.c.id == entry_id))
    return rows[0] if rows else None


@page()
async def audit_entry(request: Request, user: AdminUser) -> Response:
    entry = await _audit_row(request)
    if entry is None:
        return render(request, "error.html", user, status=404, message="No such audit entry.")
    diff = list(difflib.unified_diff(_pretty(entry.before), _pretty(entry.after), "before", "after", lineterm=""))
    return render(request, "audit_entry.html", user, entry=entry, diff=diff)


@page("editor")
async def audit_revert(request: Request, user: AdminUser) -> Response:
    entry = await _audit_row(request)
    if entry is None or entry.after is None:
        return render(request, "error.html", user, status=404, message="No such audit entry.")
    try:
        await save_configs(request, user, parse_import([orjson.loads(entry.after)]), "revert")
    except ConfigError as exc:
        return render(request, "error.html", user, status=400, message="; ".join(exc.problems))
    return RedirectResponse("/admin/audit", status_code=303, headers=HEADERS)


@page()
async def config_page(request: Request, user: AdminUser) -> Response:
    return render(request, "config.html", user)


@page()
async def config_export(request: Request, user: AdminUser) -> Response:
    document = await export_entities(engine(request))
    return Response(
        orjson.dumps(document, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={**HEADERS, "Content-Disposition": 'attachment; filename="dxapi-config.json"'},
    )


@page("editor", upload=True)
async def config_import(request: Request, user: AdminUser) -> Response:
    upload = request.state.files.get("file")
    data = await upload.read() if upload is not None else form_fields(request).get("document", "").encode()
    try:
        configs = parse_import(orjson.loads(data))
        version = await save_configs(request, user, configs, "import")
    except orjson.JSONDecodeError:
        return render(request, "config.html", user, status=400, problems=["The file is not valid JSON."])
    except ConfigError as exc:
        return render(request, "config.html", user, status=400, problems=exc.problems)
    return render(request, "config.html", user, imported=len(configs), version=version)
