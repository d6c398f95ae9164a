"""Rates: ``600/minute``, ``10/second``, ``5000/day``, ``100/30s`` — how many requests in how many seconds.

Fed by the settings (``DXAPI_RATE_LIMIT``, ``DXAPI_RATE_LIMIT_PER_ENTITY``), the CLI and the admin page (a
client's override, stored as text in ``dx_client.rate_limit``); feeds ``quota``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
# A client's override may switch its limit off; NULL in the column (``default`` in the CLI) means the default.
UNLIMITED = "unlimited"
DEFAULT = "default"
_RATE = re.compile(r"(\d+)/(\d*)([a-z]+)")
_MOST = 10**9  # far beyond any sensible rate: keeps the counters' integers small on every backend


class RateError(ValueError):
    """A rate that does not parse; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class Rate:
    count: int  # requests admitted …
    seconds: int  # … per window of this many seconds

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


def parse_rate(text: str) -> Rate:
    """``"600/minute"`` → ``Rate(600, 60)``; ``"100/30s"`` → ``Rate(100, 30)``; ``"5/hours"`` → ``Rate(5, 3600)``.

    Raises RateError for anything else (a count or window of 0 included).
    """
    found = _RATE.fullmatch(text.strip().lower().replace(" ", ""))
    unit = found.group(3) if found else ""
    seconds = UNITS.get(unit) or UNITS.get(unit.removesuffix("s")) if found else None
    if found is None or seconds is None:
        raise RateError(
            f"`{text}` is not a rate: write COUNT/UNIT (`600/minute`, `10/second`, `5000/day`) or "
            "COUNT/NUMBER+UNIT (`100/30s`, `1000/5m`)"
        )
    count, times = int(found.group(1)), int(found.group(2) or 1)
    if not 1 <= count <= _MOST or not 1 <= times * seconds <= _MOST:
        raise RateError(f"`{text}`: count and window must be at least 1 (and below {_MOST})")
    return Rate(count, times * seconds)


def parse_override(text: str) -> str | None:
    """A client's override as given to the CLI or the admin page → what its column stores.

    ``"default"`` (or nothing) → None (the column's NULL: ``DXAPI_RATE_LIMIT`` applies); ``"unlimited"`` or
    ``"none"`` → ``"unlimited"``; a rate → the same text, checked (``"1200/minute"``). Raises RateError.
    """
    cleaned = text.strip().lower()
    if cleaned in ("", DEFAULT):
        return None
    if cleaned in (UNLIMITED, "none"):
        return UNLIMITED
    parse_rate(cleaned)
    return cleaned


@functools.lru_cache(maxsize=256)
def stored_rate(text: str) -> Rate | None:
    """A stored override → its rate, None if ``unlimited``. Cached: every limited request of the client asks."""
    if text == UNLIMITED:
        return None
    return parse_rate(text)
