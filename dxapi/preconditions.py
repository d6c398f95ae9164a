"""Entity tags and conditional requests on single rows (RFC 9110 §8.8.3, §13; DESIGN §4b).

A row's tag is a digest of its configured fields as the API answers them: it changes whenever one of them
changes, whoever changed it (dxapi, another application, a SQL console), and not when a column the entity does
not expose changes. Strong: two rows with the same tag answer the same bytes for their own fields.

Fed by the endpoints (``If-Match`` / ``If-None-Match`` headers of ``/{alias}/{id}``) and by ``plan.write`` (the
reserved ``@etag`` key of a collection item); checked by ``execute.write`` / ``execute.delete`` against the row
read under a lock in the transaction that writes it, so no other write can come between check and write.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from dxapi import errors
from dxapi.registry.snapshot import EntitySnapshot

ETAG_KEY = "@etag"  # the reserved key of a collection PATCH/PUT item that carries the row's tag
ANY = "*"
# One element of a tag list: a tag (a comma may be part of one, RFC 9110 §8.8.3), then the end of the header or
# a comma with more to come.
_ELEMENT = re.compile(r'[ \t]*((?:W/)?"[^"]*")[ \t]*(?:\Z|,(?=[ \t]*\S))')


@dataclass(frozen=True, slots=True)
class Precondition:
    """What a conditional write expects of its row. ``match``: ``If-Match`` (the row exists and has one of
    these tags; ``*``: it exists), ``none_match``: ``If-None-Match`` (the row has none of these tags; ``*``: it
    does not exist). None: that header was not sent."""

    match: tuple[str, ...] | None = None
    none_match: tuple[str, ...] | None = None

    def failure(self, current: str | None) -> str | None:
        """Why the row (its tag, None: no such row) fails the condition, or None when it holds."""
        if self.match is not None:
            if current is None:
                return "does not exist"
            if ANY not in self.match and current not in self.match:
                return f"has changed: its ETag is now {current}"
        if self.none_match is not None and current is not None:
            if ANY in self.none_match:
                return "already exists"
            if current in _weakly(self.none_match):
                return f"still has the ETag {current}"
        return None


def _weakly(tags: tuple[str, ...]) -> set[str]:
    """If-None-Match compares weakly (RFC 9110 §13.1.2), on GET and on writes: W/"a" names the version "a"."""
    return {tag.removeprefix("W/") for tag in tags}


def row_tag(entity: EntitySnapshot, row: Mapping[str, Any]) -> str:
    """The strong tag of a rendered row: its configured fields only (not the relations embedded in it)."""
    values = orjson.dumps([row.get(name) for name in entity.names], default=repr)
    digest = hashlib.blake2b(values, digest_size=12).digest()
    return '"' + base64.urlsafe_b64encode(digest).decode() + '"'


def parse_tags(value: str, where: str) -> tuple[str, ...]:
    """``"a", "b"`` or ``*`` → the tags; weak tags (``W/"a"``) are kept as sent, so they never match a strong one
    (RFC 9110 §13.1.1: If-Match compares strongly). Anything else → 6112."""
    value = value.strip()
    if value == ANY:
        return (ANY,)
    tags: list[str] = []
    at = 0
    while not tags or at < len(value):
        element = _ELEMENT.match(value, at)
        if element is None:
            raise errors.PRECONDITION_INVALID.error(where=where, value=value[:100])
        tags.append(element.group(1))
        at = element.end()
    return tuple(tags)


def request_precondition(headers: Mapping[str, str]) -> Precondition | None:
    """The precondition of a request's ``If-Match`` / ``If-None-Match`` headers, or None when neither is sent."""
    match = headers.get("if-match")
    none_match = headers.get("if-none-match")
    if match is None and none_match is None:
        return None
    return Precondition(
        parse_tags(match, "If-Match") if match is not None else None,
        parse_tags(none_match, "If-None-Match") if none_match is not None else None,
    )


def item_precondition(value: Any, path: str) -> Precondition:
    """The ``@etag`` of a collection item: one tag, as ``If-Match`` would carry it."""
    if not isinstance(value, str):
        raise errors.PRECONDITION_INVALID.error(where=f"{path}.{ETAG_KEY}", value=str(value)[:100])
    return Precondition(match=parse_tags(value, f"{path}.{ETAG_KEY}"))


def not_modified(precondition: Precondition | None, current: str) -> bool:
    """GET with ``If-None-Match``: the client's copy is current (answer 304)."""
    if precondition is None or precondition.none_match is None:
        return False
    tags = _weakly(precondition.none_match)
    return ANY in tags or current in tags
