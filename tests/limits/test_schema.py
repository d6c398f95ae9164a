"""``dxapi init`` (``ensure_schema``) brings a database of an older dxapi up to date: the client's rate-limit
column and the counter table appear, and an initialised database is left as it is."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.registry.store import ensure_schema
from tests.conftest import Backend


def _layout(backend: Backend) -> tuple[set[str], bool]:
    async def read(engine: AsyncEngine) -> tuple[set[str], bool]:
        async with engine.connect() as conn:

            def inspect(sync: sa.Connection) -> tuple[set[str], bool]:
                inspector = sa.inspect(sync)
                columns = {c["name"] for c in inspector.get_columns("dx_client")}
                return columns, inspector.has_table("dx_rate_counter")

            found: tuple[set[str], bool] = await conn.run_sync(inspect)
            return found

    layout: tuple[set[str], bool] = backend.with_engine(read)
    return layout


def test_init_adds_the_rate_limit_column_and_the_counters_to_an_older_schema(backend: Backend) -> None:
    before = backend.sql("SELECT count(*) FROM dx_client")[0][0]
    backend.sql("DROP TABLE dx_rate_counter")
    backend.sql("ALTER TABLE dx_client DROP COLUMN rate_limit")
    columns, counters = _layout(backend)
    assert "rate_limit" not in columns and not counters
    backend.with_engine(ensure_schema)
    columns, counters = _layout(backend)
    assert "rate_limit" in columns and counters
    backend.with_engine(ensure_schema)  # idempotent
    assert backend.sql("SELECT count(*) FROM dx_client WHERE rate_limit IS NULL")[0][0] == before
