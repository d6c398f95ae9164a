"""The pieces every part of the OpenAPI document shares: references, ``{"data": …}`` wrappers, JSON bodies and
the answers of an operation with its error statuses.

Fed by nothing but the names and schemas it wraps; feeds ``schemas``, ``document`` and ``token``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Allows = Callable[[str, str], bool]  # (alias, "read" | "write" | "delete") → the principal may

ERROR_REF = {"$ref": "#/components/schemas/ErrorList"}
ERROR_STATUSES = {
    "400": "Invalid request (see the error codes)",
    "401": "Missing or invalid credentials",
    "403": "The credentials lack a scope",
    "404": "Unknown alias or row",
    "405": "Method not allowed",
    "413": "Body too large",
    "415": "Body is not JSON",
    "422": "Relation not editable",
    "429": "Past a rate limit, or too many failed API-key checks: retry after `Retry-After` seconds",
    "503": "Database unavailable",
}


def error_schemas() -> dict[str, Any]:
    """``Error`` and ``ErrorList``, the error array every operation may answer (``ERROR_REF``)."""
    return {
        "Error": {
            "type": "object",
            "required": ["code", "status", "message"],
            "properties": {
                "code": {"type": "string"},
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "requestId": {
                    "type": "string",
                    "description": "The request's `X-Request-Id` (the client's, or one the server made): the key to "
                    "the server's log lines about it. Absent from the per-item errors of a batch.",
                },
            },
        },
        "ErrorList": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}},
    }


def ref(name: str) -> dict[str, Any]:
    """``ref("countries")`` → ``{"$ref": "#/components/schemas/countries"}``."""
    return {"$ref": f"#/components/schemas/{name}"}


def data_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": item}}


def data_array_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": item}}}


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    """A list page: ``{"data": [items]}``; with ``page[cursor]`` also ``links``, whose ``next`` is absent on the
    last page (``plan.cursor``)."""
    page = data_array_of(item)
    page["properties"]["links"] = {
        "type": "object",
        "description": "Only when the request carried `page[cursor]`: the links of a keyset list.",
        "properties": {
            "next": {
                "type": "string",
                "format": "uri-reference",
                "description": "Path and query of the next page (the same filters, sort, limit and include, with "
                "its `page[cursor]`), relative to the server. Absent on the last page.",
            }
        },
    }
    page["properties"]["meta"] = {
        "type": "object",
        "description": "Only when the request carried `Prefer: count=exact` or `count=estimated`.",
        "required": ["total"],
        "properties": {
            "total": {"type": "integer", "minimum": 0, "description": "Rows matching the filters (not the page)."},
            "totalEstimated": {
                "type": "boolean",
                "description": "With `count=estimated` only: true when `total` is the planner's estimate.",
            },
        },
    }
    return page


def header_parameter(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An optional request header an operation takes (a string unless ``schema`` says more)."""
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def responses(
    success: str, schema: dict[str, Any] | None, description: str, failure: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``failure``: the error body when it may also be the per-item envelope (nothing saved at all)."""
    out: dict[str, Any] = {}
    if schema is None:
        out[success] = {"description": description}
    else:
        out[success] = {"description": description, "content": {"application/json": {"schema": schema}}}
    for status, text in ERROR_STATUSES.items():
        out[status] = {"description": text, "content": {"application/json": {"schema": failure or ERROR_REF}}}
    return out
