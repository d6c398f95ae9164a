"""The ``Prefer`` request header (RFC 7240) of a list read: which count of the matching rows the client wants.

Fed by the list endpoint; feeds ``plan.build`` (``ReadPlan.count``). Only the ``count`` preference means
something to dxapi; every other preference, and a ``count`` value dxapi does not know, is ignored, as RFC 7240
§2 asks of a server (a preference is never an error).

    Prefer: return=minimal, count=exact        → "exact"
    Prefer: count="estimated"; x=1             → "estimated"
    Prefer: count=approximately                → None
"""

from __future__ import annotations

from collections.abc import Iterable

EXACT = "exact"
ESTIMATED = "estimated"
_COUNTS = frozenset({EXACT, ESTIMATED})


def parse_prefer_count(headers: Iterable[str]) -> str | None:
    """The ``count`` preference of the ``Prefer`` headers given, or None. Only its first occurrence counts
    (RFC 7240 §2): ``count=bogus, count=exact`` asks for no count dxapi knows."""
    for header in headers:
        for preference in header.split(","):
            token, _, value = preference.split(";", 1)[0].partition("=")
            if token.strip().lower() != "count":
                continue
            value = value.strip().strip('"').lower()
            return value if value in _COUNTS else None
    return None
