"""The change feed's operation, ``GET /{alias}/_changes`` (DESIGN §4b), for entities that enable it."""

from __future__ import annotations

from typing import Any

from dxapi.openapi.envelopes import ERROR_REF, ref, responses
from dxapi.registry.snapshot import EntitySnapshot
from dxapi.settings import Settings


def changes_operation(entity: EntitySnapshot, settings: Settings, id_schema: dict[str, Any]) -> dict[str, Any]:
    alias = entity.alias
    change = {
        "oneOf": [
            {
                "type": "object",
                "required": ["op", "id", "data"],
                "properties": {"op": {"const": "upsert"}, "id": id_schema, "data": ref(alias)},
            },
            {"type": "object", "required": ["op", "id"], "properties": {"op": {"const": "delete"}, "id": id_schema}},
        ]
    }
    page = {
        "type": "object",
        "required": ["data", "meta"],
        "properties": {
            "data": {"type": "array", "items": change},
            "meta": {
                "type": "object",
                "required": ["cursor", "hasMore"],
                "properties": {
                    "cursor": {"type": "string", "description": "Send as `since` next time."},
                    "hasMore": {
                        "type": "boolean",
                        "description": "false: everything committed before the request was answered.",
                    },
                },
            },
        },
    }
    out = responses("200", page, "Changes after `since`, in commit order; each key at most once per page")
    out["410"] = {
        "description": "The cursor is older than the retained tombstones (code 6003): resync from the start.",
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    return {
        "tags": [alias],
        "operationId": f"changes-{alias}",
        "summary": f"Changes to {alias} since a cursor, deletes included",
        "description": "Without `since`: every live row, then what follows. `since=now`: no data, the current "
        "cursor. An empty page with `hasMore: true` carries `Retry-After`. Tombstones are kept "
        f"{settings.change_retention:g} seconds.",
        "parameters": [
            {
                "name": "since",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "`meta.cursor` of an earlier answer, or `now`.",
            },
            {
                "name": "page[limit]",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": settings.max_page_limit},
            },
        ],
        "responses": out,
    }
