"""Rendering: API values → bytes, with the headers every dxapi response carries.

Success bodies are ``{"data": …}``; error bodies are the catalogue's JSON array (see ``errors``). The first
error code also goes into ``X-Dxapi-Error-Code`` so access logs show it without the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from dxapi.errors import ApiError

JSON = "application/json"
# API answers are per caller and often carry data the next caller must not see from a shared cache.
BASE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def render_json(document: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = orjson.dumps(document)
    return Response(body, status_code=status, media_type=JSON, headers={**BASE_HEADERS, **(headers or {})})


def render_errors(error: ApiError) -> Response:
    headers = {**error.headers, "X-Dxapi-Error-Code": error.items[0].code}
    return render_json([item.as_dict() for item in error.items], error.status, headers)
