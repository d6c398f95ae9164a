"""Content negotiation of a list read: the ``Accept`` header → the media type the answer is written in.

Fed by ``endpoints.read_collection``; feeds ``execute.export`` (NDJSON, CSV) or the JSON page as before.
The usual ``Accept`` of an API client (none, ``*/*``, ``application/json``) answers before any parsing, so a
page read pays one string comparison for it.

    Accept: text/csv;q=0.9, application/x-ndjson     → application/x-ndjson (the higher q)
    Accept: text/*                                   → text/csv
    Accept: image/png                                → 406 ``2050``

Between types of equal q, the more specific range wins (``text/csv`` over ``text/*`` over ``*/*``), then JSON,
NDJSON, CSV in that order: a client that accepts anything gets the page it always got.
"""

from __future__ import annotations

from dxapi import errors

JSON = "application/json"
NDJSON = "application/x-ndjson"
CSV = "text/csv"
SERVED = (JSON, NDJSON, CSV)  # preference order between equally acceptable types
_PLAIN = frozenset({"", "*/*", JSON, "application/*"})


def parse_accept(header: str | None) -> str:
    """The served type ``header`` accepts best; :data:`JSON` when it names no type at all (406 ``2050`` when it
    names only types not served)."""
    if header is None:
        return JSON
    header = header.strip()
    if header in _PLAIN:
        return JSON
    best: tuple[float, int, int] | None = None
    chosen = JSON
    named = False
    for part in header.split(","):
        media, q = _media_range(part)
        if media is None:
            continue
        named = True
        if q <= 0:
            continue
        for preference, served in enumerate(SERVED):
            specificity = _matches(media, served)
            if specificity < 0:
                continue
            rank = (q, specificity, -preference)
            if best is None or rank > best:
                best, chosen = rank, served
    if best is None and named:
        raise errors.NOT_ACCEPTABLE.error(served=", ".join(SERVED))
    return chosen


def _media_range(part: str) -> tuple[str | None, float]:
    """``" Text/CSV ; q=0.5"`` → ``("text/csv", 0.5)``; a malformed q counts as 0 (RFC 9110 §12.4.2: 0 to 1)."""
    media, *params = part.split(";")
    media = media.strip().lower()
    if not media:
        return None, 0.0
    q = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return media, 0.0
            if not 0 <= q <= 1:
                return media, 0.0
    return media, q


def _matches(media: str, served: str) -> int:
    """How specifically ``media`` names ``served``: 2 exactly, 1 by ``type/*``, 0 by ``*/*``; -1 not at all."""
    if media == served:
        return 2
    if media == "*/*":
        return 0
    kind, _, sub = media.partition("/")
    if sub == "*" and served.startswith(kind + "/"):
        return 1
    return -1
