"""The endpoint pages: the list of configured entities, creating one from a free table, the edit grid,
activating and relations.

Saving goes through ``store.save_entities`` (``pages.save_configs``), which validates exactly as ``dxapi config
import`` does, and shows each problem next to its row; nothing is half-saved. Form values are validated at the
edge (``forms``): a bad one shows the page again (400).

Fed by the stored configuration and the reflected tables; feeds ``store`` and wakes the registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jsonschema
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dxapi.admin import forms
from dxapi.admin.pages import (
    HEADERS,
    engine,
    form_fields,
    page,
    render,
    runtime,
    save_configs,
    stored_entities,
)
from dxapi.admin.sessions import AdminUser
from dxapi.registry.entry_schema import ENTRY_SCHEMA
from dxapi.registry.identifiers import identifier_candidates
from dxapi.registry.model import ConfigError, EntityConfig
from dxapi.registry.tables import dx_audit
from dxapi.schema.reflect import is_denied, load_table_names, reflect_tables
from dxapi.schema.typemap import compatible_types

# The import's own rule for a relation name (JSON Schema of the installer format), applied to the form.
RELATION_NAME = jsonschema.Draft202012Validator(ENTRY_SCHEMA["$defs"]["relation"]["properties"]["name"])


async def _named(request: Request) -> EntityConfig | None:
    """The stored entity the path names (``/admin/entities/{alias}…``), or None."""
    configs, _ = await stored_entities(request)
    return next((c for c in configs if c.alias == request.path_params["alias"]), None)


def _missing(request: Request, user: AdminUser) -> Response:
    return render(request, "error.html", user, status=404, message="No such entity.")


async def _changes(request: Request) -> dict[str, Any]:
    async with engine(request).connect() as conn:
        rows = await conn.execute(select(dx_audit.c.table_alias, dx_audit.c.at).order_by(dx_audit.c.id))
        return {alias: at for alias, at in rows}


@page()
async def entity_list(request: Request, user: AdminUser) -> Response:
    configs, broken = await stored_entities(request)
    snapshot = runtime(request).registry.current()
    return render(
        request,
        "entities.html",
        user,
        configs=configs,
        broken=broken,
        changed=await _changes(request),
        unavailable=snapshot.unavailable,
        query=request.query_params.get("q", ""),
    )


@page("editor")
async def entity_toggle(request: Request, user: AdminUser) -> Response:
    config = await _named(request)
    if config is None:
        return _missing(request, user)
    changed = dataclasses.replace(config, is_active=not config.is_active)
    try:
        await save_configs(request, user, [changed], "activate" if changed.is_active else "deactivate")
    except ConfigError as exc:
        return render(request, "error.html", user, status=400, message="; ".join(exc.problems))
    return RedirectResponse("/admin/entities", status_code=303, headers=HEADERS)


async def _free_tables(request: Request) -> list[str]:
    configs, _ = await stored_entities(request)
    taken = {c.table_name for c in configs}
    deny = runtime(request).settings.deny_tables
    async with engine(request).connect() as conn:
        # Tables only: a view declares no keys, so none of its columns could be the identifier.
        names = await conn.run_sync(lambda sync: load_table_names(sync, views=False))
    return [n for n in names if n not in taken and not is_denied(n, deny)]


@page("editor")
async def entity_new_page(request: Request, user: AdminUser) -> Response:
    return render(request, "create.html", user, tables=await _free_tables(request))


@page("editor")
async def entity_create(request: Request, user: AdminUser) -> Response:
    form = form_fields(request)
    table_name = form.get("table", "")
    if table_name not in await _free_tables(request):
        return render(
            request,
            "create.html",
            user,
            status=400,
            tables=await _free_tables(request),
            error="Choose one of the offered tables.",
        )
    async with engine(request).connect() as conn:
        tables = await conn.run_sync(lambda sync: reflect_tables(sync, [table_name]))
    alias = form.get("alias", "").strip() or forms.suggest_alias(table_name)
    configs, _ = await stored_entities(request)
    if any(c.alias.lower() == alias.lower() for c in configs):  # saving is an upsert: never replace here
        return render(
            request,
            "create.html",
            user,
            status=400,
            tables=await _free_tables(request),
            error=f"The alias `{alias}` is taken; choose another one.",
        )
    config = forms.suggest_entity(tables[table_name], alias)
    try:
        await save_configs(request, user, [config], "create")
    except ConfigError as exc:
        return render(
            request, "create.html", user, status=400, tables=await _free_tables(request), error="; ".join(exc.problems)
        )
    return RedirectResponse(f"/admin/entities/{alias}", status_code=303, headers=HEADERS)


async def _edit_context(request: Request, config: EntityConfig) -> dict[str, Any]:
    async with engine(request).connect() as conn:
        tables = await conn.run_sync(lambda sync: reflect_tables(sync, [config.table_name]))
    table = tables.get(config.table_name)
    configs, _ = await stored_entities(request)
    by_column = {f.field_name: f for f in config.fields}
    suggested = {f.field_name: f for f in forms.suggest_entity(table, config.alias).fields} if table is not None else {}
    rows = []
    for column in table.columns if table is not None else []:
        fitting = [t.value for t in compatible_types(column.type)]
        field = by_column.get(column.name)
        if field is None and column.name in suggested:  # a column added to the table since: offered, off
            field = dataclasses.replace(suggested[column.name], is_enabled=False)
        if field is None:
            continue  # a column type no field type fits (binary …)
        # A stored field keeps its autoValue as saved; a fitting name is only pointed out next to it.
        hint = forms.suggest_auto_value(column)
        rows.append(
            {
                "column": column.name,
                "sql_type": str(column.type),
                "field": field,
                "types": fitting,
                "clock": bool({"date", "datetime"} & set(fitting)),
                "auto_hint": hint if field.auto_value is None and column.name != config.identifier else None,
            }
        )
    identifiers = identifier_candidates(table) if table is not None else []
    return {"config": config, "rows": rows, "all": configs, "identifiers": identifiers}


@page()
async def entity_edit_page(request: Request, user: AdminUser) -> Response:
    config = await _named(request)
    if config is None:
        return _missing(request, user)
    saved = request.query_params.get("saved") == "1"
    return render(
        request,
        "edit.html",
        user,
        saved=saved,
        problems=forms.GridProblems({}, []),
        **await _edit_context(request, config),
    )


@page("editor")
async def entity_save(request: Request, user: AdminUser) -> Response:
    current = await _named(request)
    if current is None:
        return _missing(request, user)
    config, problems = forms.parse_grid(form_fields(request), current)
    if not problems.by_column and config.alias != current.alias:
        problems.general.append("Renaming an entity is not possible here; export, edit and import instead.")
    if not problems.by_column and not problems.general:
        try:
            await save_configs(request, user, [config], "update")
            return RedirectResponse(f"/admin/entities/{config.alias}?saved=1", status_code=303, headers=HEADERS)
        except ConfigError as exc:
            problems = forms.assign_problems(exc.problems, config)
    return render(
        request, "edit.html", user, status=400, saved=False, problems=problems, **await _edit_context(request, config)
    )


@page("editor")
async def relation_add(request: Request, user: AdminUser) -> Response:
    current = await _named(request)
    if current is None:
        return _missing(request, user)
    relation = forms.relation_from_form(form_fields(request))
    refused = [
        f"The relation name is not valid (an import would refuse it too): {e.message}"
        for e in RELATION_NAME.iter_errors(relation.name)
    ]
    if refused:
        return render(
            request,
            "edit.html",
            user,
            status=400,
            saved=False,
            problems=forms.GridProblems({}, refused),
            **await _edit_context(request, current),
        )
    changed = dataclasses.replace(current, relations=(*current.relations, relation))
    try:
        await save_configs(request, user, [changed], "update")
    except ConfigError as exc:
        return render(
            request,
            "edit.html",
            user,
            status=400,
            saved=False,
            problems=forms.GridProblems({}, exc.problems),
            **await _edit_context(request, current),
        )
    return RedirectResponse(f"/admin/entities/{current.alias}?saved=1", status_code=303, headers=HEADERS)


@page("editor")
async def relation_remove(request: Request, user: AdminUser) -> Response:
    current = await _named(request)
    if current is None:
        return _missing(request, user)
    kept = tuple(r for r in current.relations if r.name != request.path_params["name"])
    changed = dataclasses.replace(current, relations=kept)
    try:
        await save_configs(request, user, [changed], "update")
    except ConfigError as exc:
        return render(request, "error.html", user, status=400, message="; ".join(exc.problems))
    return RedirectResponse(f"/admin/entities/{current.alias}?saved=1", status_code=303, headers=HEADERS)
