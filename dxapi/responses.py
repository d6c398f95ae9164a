"""Rendering: API values → bytes, with the headers every dxapi response carries.

Success bodies are ``{"data": …}``; error bodies are the catalogue's JSON array (see ``errors``), each item
with the request's id. The first
error code also goes into ``X-Dxapi-Error-Code`` so access logs show it without the body.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from dxapi.errors import ApiError
from dxapi.observe import request_id

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


class _Rendered(Response):
    """A response whose raw headers are made here: Starlette's constructor lower-cases and encodes every
    header, the ones every answer carries included, on each answer (a tenth of a read by id's own time)."""

    media_type = JSON

    def __init__(self, body: bytes, status: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


_BASE_RAW = [
    *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in BASE_HEADERS.items()),
    (b"content-type", JSON.encode()),
]


def render_json(document: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``document`` as JSON with ``BASE_HEADERS``; ``headers`` add to them (or replace one of the same name)."""
    body = orjson.dumps(document, default=_unencodable)
    raw = [(b"content-length", str(len(body)).encode())]
    if headers:
        extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        named = {name for name, _ in extra}
        raw += [header for header in _BASE_RAW if header[0] not in named]
        raw += extra
    else:
        raw += _BASE_RAW
    return _Rendered(body, status, raw)


def render_errors(error: ApiError) -> Response:
    """The error array; each item names the request (``requestId``) when one is being served, so a client's
    bug report leads to the server's log lines."""
    headers = {**error.headers, "X-Dxapi-Error-Code": error.items[0].code}
    items = [item.as_dict() for item in error.items]
    found = request_id()
    if found is not None:
        for item in items:
            item["requestId"] = found
    return render_json(items, error.status, headers)
