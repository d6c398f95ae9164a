"""The query string of ``GET /{alias}/_changes``: ``since`` (a cursor, ``now``, or nothing) and ``page[limit]``."""

from __future__ import annotations

from collections.abc import Iterable

from dxapi import errors
from dxapi.request.params import parse_page_value


def parse_changes_request(
    pairs: Iterable[tuple[str, str]], default_limit: int, max_limit: int
) -> tuple[str | None, int]:
    """→ ``(since, limit)``; an empty ``since`` is the same as none: from the beginning."""
    seen: set[str] = set()
    since: str | None = None
    limit = default_limit
    for key, value in pairs:
        if key in seen:
            raise errors.QUERY_PARAMETER_REPEATED.error(name=key)
        seen.add(key)
        if key == "since":
            since = value or None
        elif key == "page[limit]":
            limit = parse_page_value("limit", value)
            if limit > max_limit:
                raise errors.PAGE_LIMIT_TOO_LARGE.error(value=limit, maximum=max_limit)
        else:
            raise errors.QUERY_PARAMETER_UNKNOWN.error(name=key)
    return since, limit
