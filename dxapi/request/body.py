"""Request bodies for writes: bytes → ``WriteRequest``, refusing anything malformed before planning.

Checks, in order: media type (415), declared and actual size (413, counted while streaming so an oversized
body is never held in memory), JSON syntax, duplicate keys, NaN/Infinity (1301), and the envelope shape:
``{"data": [ {…}, … ]}`` for collections, ``{"data": {…}}`` for ``/{alias}/{id}`` (1301), batch size.

JSON is parsed with the standard library on purpose: it keeps integers exact at any size (orjson turns
integers ≥ 2^64 into floats), parses fractions as ``Decimal`` (no binary rounding of prices), and lets a
hook refuse duplicate keys instead of silently keeping the last one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.requests import ClientDisconnect, Request

from dxapi import errors


@dataclass(frozen=True, slots=True)
class WriteRequest:
    items: list[dict[str, Any]]
    single: bool  # `{"data": {…}}` on /{alias}/{id}
    transactional: bool


class _Malformed(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Malformed(f"the key `{key[:40]}` is given twice")
            seen.add(key)
    return document


def _no_constants(name: str) -> Any:
    raise _Malformed(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_float=Decimal, parse_constant=_no_constants
)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_json(text: str) -> Any:
    """JSON text → Python with the rules of bodies (exact integers, Decimal fractions), or ValueError saying
    why: duplicate keys, NaN/Infinity, syntax (filter operator objects are read with it too)."""
    return _DECODER.decode(text)


def parse_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
        document = _DECODER.decode(text)
        # `"\ud800"` is valid JSON but no storable text; only bodies with such escapes need the walk.
        if _SURROGATE_ESCAPE.search(text) and not _encodable(document):
            raise _Malformed("lone surrogate")
    except (ValueError, _Malformed, RecursionError):
        raise errors.INVALID_BODY.error() from None
    return document


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    return True


async def read_body(request: Request, max_bytes: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise errors.UNSUPPORTED_MEDIA_TYPE.error(media_type=media_type or "none")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise errors.BODY_TOO_LARGE.error(maximum=max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise errors.BODY_TOO_LARGE.error(maximum=max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise errors.INVALID_BODY.error() from None
    return b"".join(chunks)


def parse_write_request(data: bytes, *, single: bool, transactional: bool, max_items: int) -> WriteRequest:
    document = parse_json(data)
    if not isinstance(document, dict) or set(document) != {"data"}:
        raise errors.INVALID_BODY.error()
    payload = document["data"]
    if single:
        if not isinstance(payload, dict):
            raise errors.INVALID_BODY.error()
        return WriteRequest([payload], single=True, transactional=transactional)
    if not isinstance(payload, list) or not payload or not all(isinstance(i, dict) for i in payload):
        raise errors.INVALID_BODY.error()
    if len(payload) > max_items:
        raise errors.TOO_MANY_ITEMS.error(count=len(payload), maximum=max_items)
    return WriteRequest(payload, single=False, transactional=transactional)


def is_transactional(header: str | None) -> bool:
    """Spryker: only exactly ``false`` or ``0`` switches the per-item mode on; anything else is transactional."""
    return header not in ("false", "0")
