"""List cursors (``page[cursor]``, DESIGN §4b): where the next page of a keyset list starts, as opaque text.

Read by ``plan.build`` (``parse_cursor``: text → ``CursorPlan`` of bound values, or 2020); written by the list
endpoint from the last row it answers (``next_cursor``). A cursor is base64url, without padding, of the compact
JSON ``[1, fingerprint, [value, …]]``: the format version, a fingerprint of the entity and its order, and the
last row's value of every order key (the sort fields, then the identifier) exactly as the list answered it —
decimals as text, date-times in ISO 8601 with every fraction digit, text as it is. Reading one parses those
values with each field's filter parser, so the keyset predicate binds what a filter with the same value would
and a value answered always finds its place again (``sql.build.field_value``), on every backend.

    sort=updatedAt on products, last row {"updatedAt": "2026-01-31T12:00:00.250000", "idProduct": 42, …}
    → [1,"5d0c5a1e9f3b",["2026-01-31T12:00:00.250000",42]] → "WzEsIjVkMGM1YTFlOWYzYiIsWyIyMDI2LTAx…"

Filters are not part of the fingerprint: a position in the order means the same whatever filters select. The
cursor is not signed: it says only where to start, which a filter could say as well, and every value in it is
parsed by its field's codec and bound, never written into SQL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

from dxapi import errors
from dxapi.plan.types import CursorPlan, OrderKey, ReadPlan
from dxapi.registry.snapshot import EntitySnapshot

VERSION = 1
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_SCALARS = (str, int, float, bool)


def fingerprint(entity: EntitySnapshot, order: Sequence[OrderKey]) -> str:
    """12 hex digits naming the entity and its order: ``products`` by ``updatedAt`` then ``idProduct``."""
    text = "\n".join([entity.alias, *(("-" if k.descending else "+") + k.field.name for k in order)])
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def parse_cursor(entity: EntitySnapshot, order: Sequence[OrderKey], text: str) -> CursorPlan:
    """``page[cursor]`` of a list of ``entity`` in ``order``; empty text is the first page."""
    made_for = fingerprint(entity, order)
    if not text:
        return CursorPlan(after=None, fingerprint=made_for)
    document = _decoded(text)
    if not (
        isinstance(document, list)
        and len(document) == 3
        and document[0] == VERSION
        and isinstance(document[1], str)
        and isinstance(document[2], list)
    ):
        raise errors.CURSOR_INVALID.error(reason="it is not a cursor dxapi made")
    if document[1] != made_for or len(document[2]) != len(order):
        raise errors.CURSOR_INVALID.error(reason="it was made for another entity or another `sort`")
    return CursorPlan(
        after=tuple(_bound(key, value) for key, value in zip(order, document[2], strict=True)), fingerprint=made_for
    )


def _decoded(text: str) -> Any:
    if not _BASE64URL.fullmatch(text):
        raise errors.CURSOR_INVALID.error(reason="it is not a cursor dxapi made")
    try:
        return orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError, as is bad UTF-8
        raise errors.CURSOR_INVALID.error(reason="it is not a cursor dxapi made") from None


def _bound(key: OrderKey, value: Any) -> Any:
    if value is None:
        return None
    field = key.field
    try:
        if not isinstance(value, _SCALARS):
            raise ValueError("not a single value")
        return field.parse(value)
    except ValueError:
        raise errors.CURSOR_INVALID.error(reason=f"its value for `{field.name}` does not fit the field") from None


def next_cursor(plan: ReadPlan, last: Mapping[str, Any]) -> str:
    """The cursor of the page after the one whose last answered item is ``last``."""
    assert plan.cursor is not None
    values = [last[key.field.name] for key in plan.order]
    # orjson, as the answer itself is rendered (``responses``): the values are the ones the client was shown.
    document = orjson.dumps([VERSION, plan.cursor.fingerprint, values], default=_unencodable)
    return base64.urlsafe_b64encode(document).rstrip(b"=").decode("ascii")


def _unencodable(value: Any) -> Any:
    # A number the driver hands over for a string field (one on a NUMERIC column) goes back as its text, which is
    # what a filter on the field compares; anything else without a JSON form is null, as ``responses`` answers it.
    return format(value, "f") if isinstance(value, Decimal) else None
