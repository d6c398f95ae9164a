"""Benchmark data: (re)create the database, load the demo shop, clean up, and sample what scenarios need.

Fed by the database URL from `run`; feeds `scenarios` (ids, cursors, foreign keys) through `DataContext`.
The rows come from `dxapi.demo`, so the benchmark reads the same shop as the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url

from benchmarks.report import log
from dxapi.registry.capture import capture_names

URL_ENV = "DXAPI_BENCH_DATABASE_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/dxapi_bench"
PRODUCTS = 100_000
PAGE = 100  # rows per page in the list scenarios
BENCH_SKU_PREFIX = "BENCH-"  # rows the POST scenario creates; deleted after each server's run
CHANGE_TABLE = capture_names("shop_product").table  # where capture records the products' changes
KEY_TABLE = "dx_idempotency"  # where dxapi records the answers of keyed writes
KEY_FILLER = "benchmark filler"  # fingerprint of the records fill_key_records adds (no request has it)
KEY_FILLER_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class DataContext:
    """What the scenarios need to know about the loaded data."""

    id_max: int  # seeded products have ids 1..id_max
    cursors: list[str]  # ISO updatedAt values with at least a full page after them
    category_ids: list[int]
    tax_rate_ids: list[int]


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def recreate_database(url: str) -> None:
    name = make_url(url).database
    if not name:
        raise SystemExit(f"{URL_ENV} names no database")
    # the maintenance database, because one cannot drop the database one is connected to
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()


async def load_shop(url: str, products: int) -> None:
    """Fill the shop through dxapi.demo, so both servers and the test suite see the very same rows."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from dxapi.demo import build_shop

    # no sync PostgreSQL driver is installed: run the sync builder on asyncpg through run_sync
    engine = create_async_engine(make_url(url).set(drivername="postgresql+asyncpg"))
    try:
        async with engine.begin() as conn:
            counts = await conn.run_sync(build_shop, products)
    finally:
        await engine.dispose()
    log(f"loaded {counts}")
    await vacuum(url)


async def vacuum(url: str) -> None:
    """Fresh statistics and visibility map, so both servers meet the same plans and no dead rows."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def delete_bench_rows(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        status = await conn.execute("DELETE FROM shop_product WHERE sku LIKE $1", BENCH_SKU_PREFIX + "%")
        await conn.execute("VACUUM ANALYZE shop_product")
        # with the change feed on, the change table took an entry per written row: vacuumed too, so
        # autovacuum does not pick a measured slice to catch up
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", CHANGE_TABLE):
            await conn.execute(f"VACUUM ANALYZE {quote_ident(CHANGE_TABLE)}")
    finally:
        await conn.close()
    return int(status.split()[-1])


async def backend_pids(url: str) -> list[int]:
    """The PostgreSQL server processes serving clients of the benchmark database (not this connection's)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


async def count_products(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        found: int = await conn.fetchval("SELECT count(*) FROM shop_product")
    finally:
        await conn.close()
    return found


async def load_context(url: str) -> DataContext:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        id_max = await conn.fetchval(
            "SELECT max(id_product) FROM shop_product WHERE sku NOT LIKE $1", BENCH_SKU_PREFIX + "%"
        )
        if not id_max:
            raise SystemExit("shop_product is empty: run without --skip-load first")
        rows = await conn.fetch(
            "SELECT updated_at FROM shop_product WHERE id_product <= $1 ORDER BY random() LIMIT 1000",
            max(1, id_max - PAGE),
        )
        categories = await conn.fetch("SELECT id_category FROM shop_category ORDER BY id_category")
        tax_rates = await conn.fetch("SELECT id_tax_rate FROM shop_tax_rate ORDER BY id_tax_rate")
    finally:
        await conn.close()
    return DataContext(
        id_max=id_max,
        cursors=[row["updated_at"].isoformat() for row in rows],
        category_ids=[row["id_category"] for row in categories],
        tax_rate_ids=[row["id_tax_rate"] for row in tax_rates],
    )


async def fill_key_records(url: str, rows: int = KEY_FILLER_ROWS) -> None:
    """Give the idempotency records' table `rows` records that no request will ever look up, then ANALYZE.

    A production table holds the records of a day. An empty one is worse than small: PostgreSQL plans the
    key's lookup as a sequential scan then, and the cached plan of each pooled connection stays so while
    the phase fills the table, until the next ANALYZE, so every lookup would read every record of the phase.
    """
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        table = quote_ident(KEY_TABLE)
        # scopes as dxapi's (64 hex digits), recent (not pruned meanwhile), tiny answers
        await conn.execute(
            f"INSERT INTO {table} (scope, fingerprint, status, headers, body, created_at) "
            "SELECT md5('filler' || i) || md5('bench' || i), $1, 200, '{}', '\\x', "
            "(extract(epoch FROM now()) * 1000)::bigint FROM generate_series(1, $2::int) AS i "
            "ON CONFLICT (scope) DO UPDATE SET created_at = excluded.created_at",
            KEY_FILLER,
            rows,
        )
        await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


async def delete_key_records(url: str) -> int:
    """Delete the idempotency records the benchmark's requests made (not the filler) → how many.

    So each keyed run meets the same table, and the records of 1000-row answers do not pile up.
    """
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", KEY_TABLE):
            return 0
        status = await conn.execute(f"DELETE FROM {quote_ident(KEY_TABLE)} WHERE fingerprint <> $1", KEY_FILLER)
        await conn.execute(f"VACUUM ANALYZE {quote_ident(KEY_TABLE)}")
    finally:
        await conn.close()
    return int(status.split()[-1])
