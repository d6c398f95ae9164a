"""Statement caches: what an entity snapshot remembers of the SQL it has run, by request shape.

Each ``EntitySnapshot`` carries two of them, one for reads (``execute.read``: compiled root and include
statements) and one for writes (``execute.write``: INSERT and UPDATE statements), so neither can evict the
other. Filled on first use, never shared between snapshots: a reload starts them empty, as the reflected
columns they were built from may have changed.

    statements = Statements[str]()
    statements.get(shape) or statements.remember(shape, build(shape))

A lookup is the dict's own ``get`` (the hot path of every request); only a miss pays for the bound.
It lives under ``registry`` because the snapshot holds it (imports point one way); ``execute`` fills it.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

# Distinct shapes remembered per entity and cache; past it the cache starts over: a client looping over ever
# new filter combinations must not grow memory. Starting over is as cheap as it gets on the hit path (a plain
# dict lookup; an LRU would pay a reorder on every hit, about 1.5 times the lookup), and a hot shape is built
# again once per 256 new shapes either way.
STATEMENTS_PER_ENTITY = 256


class Statements(dict[tuple[Any, ...], T]):
    """Statements by shape, at most :data:`STATEMENTS_PER_ENTITY`; add them with :meth:`remember` only."""

    __slots__ = ()

    def remember(self, shape: tuple[Any, ...], statement: T) -> T:
        if len(self) >= STATEMENTS_PER_ENTITY:
            self.clear()
        self[shape] = statement
        return statement
