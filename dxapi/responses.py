"""Rendering: API values → bytes, with the headers every dxapi response carries.

Success bodies are ``{"data": …}``; error bodies are the catalogue's JSON array (see ``errors``). The first
error code also goes into ``X-Dxapi-Error-Code`` so access logs show it without the body.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from dxapi.errors import ApiError

JSON = "application/json"
# API answers are per caller and often carry data the next caller must not see from a shared cache.
BASE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

log = logging.getLogger("dxapi.render")
_REPORTED: set[str] = set()


def _unencodable(value: Any) -> None:
    """orjson's fallback for a value it has no JSON for — on SQLite any column can hold a BLOB — answered as
    null: after a committed write, or for one odd row of a collection, a 500 would be worse."""
    kind = type(value).__name__
    if kind not in _REPORTED:
        _REPORTED.add(kind)
        log.warning("a stored value of type %s has no JSON form; served as null", kind)
    return None


def render_json(document: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = orjson.dumps(document, default=_unencodable)
    return Response(body, status_code=status, media_type=JSON, headers={**BASE_HEADERS, **(headers or {})})


def render_errors(error: ApiError) -> Response:
    headers = {**error.headers, "X-Dxapi-Error-Code": error.items[0].code}
    return render_json([item.as_dict() for item in error.items], error.status, headers)
