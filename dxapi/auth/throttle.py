"""Attempt counting per key (a client, a user, a source address) over a sliding minute, per worker.

Shared by ``/token``, API-key checks and the back-office login: a guess that costs the server an argon2
verification is counted before the verification runs, so a burst of concurrent guesses is counted too.
"""

from __future__ import annotations

import time
from collections import deque


class Throttle:
    """At most ``limit`` attempts per key in any 60 seconds."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: dict[str, deque[float]] = {}

    def hit(self, key: str) -> int:
        """Record an attempt; return 0 if allowed, else the seconds to wait."""
        now = time.monotonic()
        window = self._seen.setdefault(key, deque())
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self._limit:
            return int(61 - (now - window[0])) or 1
        window.append(now)
        if len(self._seen) > 50_000:  # forget idle keys rather than grow without bound
            self._seen = {k: v for k, v in self._seen.items() if v and now - v[-1] <= 60}
        return 0

    def forgive(self, key: str) -> None:
        """Take back one recorded attempt: it turned out not to be a guess (the credential was right)."""
        window = self._seen.get(key)
        if window:
            window.pop()
