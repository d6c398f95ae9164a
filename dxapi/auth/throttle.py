"""Attempt counting per key (a client, a user, a source address) over a minute, for every worker and host.

Shared by ``/token``, API-key checks and the back-office login, counted in the same store as the rate limits
(``limits.counters``: the database, or Redis): a guess sent to another worker or host counts as much. A guess
that costs the server an argon2 verification is counted before the verification runs, so a burst of concurrent
guesses is counted too; a right credential is forgiven (its attempt taken back). The minute starts with a key's
first attempt after the previous minute ended. If the store fails, attempts are let through (see ``counters``).
"""

from __future__ import annotations

import math

from dxapi.limits.counters import Counters
from dxapi.limits.quota import on_rejected

WINDOW_SECONDS = 60


class Throttle:
    """At most ``limit`` attempts per key in a minute; ``scope`` (``token``, ``login``, ``api_key``) names the
    throttle in the store's keys and in rejections."""

    def __init__(self, counters: Counters, scope: str, limit: int) -> None:
        self._counters = counters
        self._scope = scope
        self._limit = limit

    async def hit(self, key: str) -> int:
        """Record an attempt; return 0 if allowed, else the seconds to wait."""
        found = await self._counters.hit(f"{self._scope}:{key}", WINDOW_SECONDS)
        if found is None or found.count <= self._limit:
            return 0
        on_rejected(self._scope)
        return max(1, math.ceil(found.resets_in))

    async def forgive(self, key: str) -> None:
        """Take back one recorded attempt: it turned out not to be a guess (the credential was right)."""
        await self._counters.take_back(f"{self._scope}:{key}")
