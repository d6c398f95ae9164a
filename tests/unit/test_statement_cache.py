"""The prepared-statement cache of PostgreSQL connections keeps one large statement at most (dxapi.db)."""

from __future__ import annotations

import asyncio

from sqlalchemy import event
from sqlalchemy.util import LRUCache

from dxapi.db import LARGE_STATEMENT, BoundedStatementCache, _bound_large_statements, create_engine


def test_small_statements_are_all_kept() -> None:
    cache = BoundedStatementCache(100)
    for n in range(50):
        cache[f"SELECT {n}"] = n
    assert len(cache) == 50


def test_only_the_last_large_statement_is_kept() -> None:
    cache = BoundedStatementCache(100)
    cache["SELECT 1"] = "small"
    first, second = "A" * (LARGE_STATEMENT + 1), "B" * (LARGE_STATEMENT + 1)
    cache[first] = 1
    cache[first] = 1  # the same one again: still there
    assert first in cache
    cache[second] = 2
    assert first not in cache
    assert cache[second] == 2
    assert cache["SELECT 1"] == "small"


def test_a_large_statement_evicted_by_age_is_no_problem() -> None:
    cache = BoundedStatementCache(2)
    large = "A" * (LARGE_STATEMENT + 1)
    cache[large] = 1
    for n in range(10):
        cache[f"SELECT {n}"] = n
    cache["B" * (LARGE_STATEMENT + 1)] = 2  # the first large one is gone already
    assert len(cache) <= 3


def test_postgresql_connections_get_the_bounded_cache() -> None:
    engine = create_engine("postgresql://nobody@127.0.0.1:1/none")
    assert event.contains(engine.sync_engine, "connect", _bound_large_statements)

    class Adapted:  # what SQLAlchemy's asyncpg adapter connection holds
        _prepared_statement_cache = LRUCache(7)

    adapted = Adapted()
    _bound_large_statements(adapted, None)
    assert isinstance(adapted._prepared_statement_cache, BoundedStatementCache)
    assert adapted._prepared_statement_cache.capacity == 7
    asyncio.run(engine.dispose())
