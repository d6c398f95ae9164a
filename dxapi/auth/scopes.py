"""Scopes and the Principal that holds them: what a caller may do.

A scope is ``alias:action`` (``products:read``) or ``*:action`` (``*:write``); a role is a fixed set of
scopes. Fed by the scope text of clients, API keys and token requests (``parse_scopes``) and the roles of
users; feeds ``principals`` (the Principal of a request), ``accounts`` and ``oauth`` (what a subject may hold
now, ``narrow``), and the plan stage, which checks the scopes of the root entity and every entity reached
through ``include`` or nested writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

READ, WRITE, DELETE = "read", "write", "delete"
ACTIONS = (READ, WRITE, DELETE)
ROLES = {"admin": "*:read *:write *:delete", "editor": "*:read *:write", "viewer": "*:read"}


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # "client:<client_id>", "user:<id>" or "apikey:<prefix>"
    scopes: frozenset[str]
    rate_limit: str | None = None  # a client's own rate limit as stored (dxapi.limits.rates); None: the default

    def allows(self, alias: str, action: str) -> bool:
        return f"{alias}:{action}" in self.scopes or f"*:{action}" in self.scopes


def covered(scope: str, allowed: frozenset[str]) -> bool:
    """``products:read`` is covered by ``products:read`` or ``*:read``; ``*:read`` only by ``*:read``."""
    return scope in allowed or f"*:{scope.rpartition(':')[2]}" in allowed


def narrow(scopes: Iterable[str], allowed: frozenset[str]) -> frozenset[str]:
    return frozenset(s for s in scopes if covered(s, allowed))


def parse_scopes(text: str) -> frozenset[str]:
    """``"products:read *:write"`` → the set; raises ValueError on anything else."""
    scopes = frozenset(text.replace(",", " ").split())
    for scope in scopes:
        alias, colon, action = scope.rpartition(":")
        if not colon or action not in ACTIONS or not alias or not (alias == "*" or _alias_like(alias)):
            raise ValueError(f"`{scope}` is not a scope; use alias:read, alias:write, alias:delete or *:read …")
    return scopes


def _alias_like(text: str) -> bool:
    return all(c.isalnum() or c in "_-" for c in text)
