"""`make bench-scaling`: how dxapi's cost grows with what a request asks for and with the size of what it serves.

One `dxapi serve` worker on PostgreSQL, no reference server: the figures are dxapi's own, measured a few seconds
each with the harness's load generator (`load.run_load`), after a short warm-up:

- list: a page of 10, 100 or 1,000 products (the page after a random id, ordered by the identifier);
- post: a POST of 10, 100, 1,000 or 10,000 new products in one request (unique `BENCH-` skus, deleted after);
- include: a page of 100 products with relations embedded 0, 1 or 2 levels deep;
- keyset: a page of 100 after a random `updatedAt` (filter `gt` + sort) on 100,000 and on 1,000,000 products,
  and for contrast a page at a random `page[offset]` of the same tables;
- entities: 10 and 1,000 configured entities (small tables made for it): reading and building the snapshot,
  the worker's start, its RSS, and get-by-id on the products.

Two throw-away databases: `DXAPI_BENCH_SCALING_URL` (default `.../dxapi_bench_scaling`, the 100,000 products,
recreated every run) and `DXAPI_BENCH_1M_URL` (default `.../dxapi_bench_1m`, the 1,000,000). Both are dropped at
the end unless `--keep`; a kept 1M database that still holds exactly `--big-products` products is reused, so
the slow load is paid once. Prints a markdown table and writes benchmarks/results/scaling.json; every
measurement carries the machine's load averages at its end (the cores are shared).

    python -m benchmarks.scaling [--duration S] [--warmup S] [--only SECTION] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from benchmarks.auth import BearerToken
from benchmarks.data import (
    PRODUCTS,
    DataContext,
    asyncpg_dsn,
    count_products,
    delete_bench_rows,
    load_context,
    load_shop,
    quote_ident,
    recreate_database,
)
from benchmarks.feed import wait_for_version
from benchmarks.history import git_commit, load_average
from benchmarks.load import Result, run_load
from benchmarks.report import RESULTS_DIR, log
from benchmarks.run import CONFIG_FILE, disable_client, exit_on_sigterm, prepare_dxapi, settle
from benchmarks.scenarios import PRODUCTS_PATH, Target, keyset_target, post_target, query
from benchmarks.servers import Server, fetch, peak_rss, tree_rss

URL_ENV = "DXAPI_BENCH_SCALING_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/dxapi_bench_scaling"
BIG_URL_ENV = "DXAPI_BENCH_1M_URL"
DEFAULT_BIG_URL = "postgresql://postgres@127.0.0.1:5432/dxapi_bench_1m"
BIG_PRODUCTS = 1_000_000
SECTIONS = ("list", "post", "include", "keyset", "entities")
PAGE_SIZES = (10, 100, 1000)
BATCHES = (10, 100, 1000, 10_000)
PAGE = 100  # rows per page where the page size is not what is varied
STARTS = 200  # random start ids (cursors) per URL list
GET_CONNECTIONS = 16  # as the harness's read scenarios
POST_CONNECTIONS = 2  # a 10,000-row request takes seconds: more in flight would only queue on one worker
SHOP_ENTITIES = 5  # examples/shop-config.json
ENTITY_COUNTS = (10, 1000)
SNAPSHOT_REPEATS = 3
# depth → include parameter. The demo configuration's relations from the products are one level deep
# (productStocks, productTaxRate); a second level needs a relation from the tax rates to their country,
# which this script adds (TAX_RATE_COUNTRY) to its own database only.
INCLUDES = (
    ("0", ""),
    ("1 (productTaxRate)", "productTaxRate"),
    ("1 (productStocks)", "productStocks"),
    ("2 (productTaxRate.taxRateCountry)", "productTaxRate.taxRateCountry"),
)
TAX_RATE_COUNTRY = {
    "name": "taxRateCountry",
    "isEditable": False,
    "childDynamicEntityConfiguration": {"tableAlias": "countries"},
    "relationFieldMappings": [{"childFieldName": "id_country", "parentFieldName": "fk_country"}],
}
SCALE_TABLE = "scale_entity_{:04d}"  # the small tables of the entities section
SCALE_ALIAS = "scale-{:04d}"


@dataclass
class Row:
    """One line of the table."""

    section: str
    case: str
    requests_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    rows_per_s: float | None = None
    errors: int = 0
    non_2xx: int = 0
    notes: dict[str, Any] = field(default_factory=dict)  # section-specific figures (RSS, seconds, ...)
    load_average: list[float] = field(default_factory=list)  # at the end of the measurement


@dataclass
class Dxapi:
    """A running dxapi worker and its bearer token."""

    server: Server
    token: BearerToken
    client_id: str
    url: str

    def headers(self, seconds: float) -> dict[str, str]:
        return self.token.headers(seconds)


@dataclass
class Settings:
    duration: float
    warmup: float


def measure(dx: Dxapi, target: Target, connections: int, settings: Settings, rows: int, id_max: int) -> Row:
    """Warm-up, then one measured load of `target`; rows/s = successful requests/s x `rows`."""
    headers = dx.headers(settings.warmup + settings.duration + 10)
    checked = check(target, headers) if target.method == "GET" else {}
    if settings.warmup > 0:
        settle(
            run_load(
                target.urls, target.method, target.body, settings.warmup, connections, headers=headers, id_max=id_max
            )
        )
        clean(dx.url, target)
    result = run_load(
        target.urls, target.method, target.body, settings.duration, connections, headers=headers, id_max=id_max
    )
    settle(result)
    clean(dx.url, target)
    row = row_of(result, rows)
    row.notes.update(checked)
    return row


def check(target: Target, headers: dict[str, str]) -> dict[str, Any]:
    """One request first: its status, rows and embedded rows, so a case that answers less is seen."""
    status, raw = fetch("GET", target.urls[0].replace("{id}", "42"), headers=headers)
    if not 200 <= status < 300:
        log(f"  WARNING sample request answered {status}: {raw[:200].decode(errors='replace')}")
        return {"sample_status": status}
    data = orjson.loads(raw).get("data")
    items = data if isinstance(data, list) else [data]
    return {"sample_status": status, "sample_rows": len(items), "sample_embedded": sum(map(embedded, items))}


def embedded(value: Any) -> int:
    """Rows embedded in a row, at every level (included relations are arrays of rows)."""
    if not isinstance(value, dict):
        return 0
    found = 0
    for child in value.values():
        if isinstance(child, list):
            found += sum(1 + embedded(c) for c in child if isinstance(c, dict))
    return found


def row_of(result: Result, rows: int) -> Row:
    ok = result.ok_per_s
    return Row(
        "",
        "",
        requests_per_s=ok,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        rows_per_s=ok * rows,
        errors=result.errors,
        non_2xx=result.non_2xx,
        load_average=load_average(),
    )


def clean(url: str, target: Target) -> None:
    if target.method == "POST":
        asyncio.run(delete_bench_rows(url))


def by_id_pages(base: str, id_max: int, limit: int, include: str = "") -> Target:
    """Pages of `limit` products after random ids, by the identifier, each page full."""
    step = max(1, (id_max - limit) // STARTS)
    urls = []
    for start in range(0, max(1, id_max - limit), step):
        params = {
            "filter[products.idProduct]": orjson.dumps({"gt": start}).decode(),
            "page[offset]": "0",  # with page[limit], as the harness does (Spryker reads the limit only then)
            "page[limit]": str(limit),
        }
        if include:
            params["include"] = include
        urls.append(f"{base}{PRODUCTS_PATH}?{query(**params)}")
    return Target(urls)


def offset_pages(base: str, id_max: int) -> Target:
    """A page of 100 at a random depth by `page[offset]`: PostgreSQL walks past every row before it."""
    step = max(1, (id_max - PAGE) // STARTS)
    return Target(
        [
            f"{base}{PRODUCTS_PATH}?" + query(**{"page[offset]": str(offset), "page[limit]": str(PAGE)})
            for offset in range(0, max(1, id_max - PAGE), step)
        ]
    )


def by_id(base: str) -> Target:
    return Target([f"{base}{PRODUCTS_PATH}/{{id}}"])


def list_section(dx: Dxapi, ctx: DataContext, settings: Settings) -> list[Row]:
    rows = []
    for limit in PAGE_SIZES:
        row = measure(dx, by_id_pages(dx.server.base, ctx.id_max, limit), GET_CONNECTIONS, settings, limit, ctx.id_max)
        rows.append(named(row, "list", f"page[limit]={limit:,}"))
    return rows


def post_section(dx: Dxapi, ctx: DataContext, settings: Settings) -> list[Row]:
    rows = []
    for batch in BATCHES:
        # a long request needs a longer run to complete more than a handful
        longer = Settings(max(settings.duration, 2 * settings.duration * batch / BATCHES[-1]), settings.warmup)
        row = measure(dx, post_target(dx.server.base, ctx, batch), POST_CONNECTIONS, longer, batch, ctx.id_max)
        rows.append(named(row, "post", f"{batch:,} rows per request"))
    return rows


def include_section(dx: Dxapi, ctx: DataContext, settings: Settings) -> list[Row]:
    rows = []
    for depth, include in INCLUDES:
        target = by_id_pages(dx.server.base, ctx.id_max, PAGE, include)
        row = measure(dx, target, GET_CONNECTIONS, settings, PAGE, ctx.id_max)
        row.notes["include"] = include or None
        rows.append(named(row, "include", f"depth {depth}"))
    return rows


def keyset_rows(dx: Dxapi, ctx: DataContext, settings: Settings) -> list[Row]:
    """The keyset page, the offset page and get-by-id on one database (its size in the case names)."""
    size = f"{ctx.id_max:,} products"
    cases = (
        (
            "keyset page (updatedAt gt, sort)",
            keyset_target(dx.server.base, replace(ctx, cursors=ctx.cursors[:STARTS])),
            PAGE,
        ),
        ("offset page (random page[offset])", offset_pages(dx.server.base, ctx.id_max), PAGE),
        ("get-by-id", by_id(dx.server.base), 1),
    )
    rows = []
    for name, target, rows_per_request in cases:
        row = measure(dx, target, GET_CONNECTIONS, settings, rows_per_request, ctx.id_max)
        rows.append(named(row, "keyset", f"{name}, {size}"))
    return rows


def named(row: Row, section: str, case: str) -> Row:
    row.section, row.case = section, case
    log(
        f"  {section} {case}: {row.requests_per_s or 0:,.1f} req/s, p50 {row.p50_ms or 0:.1f} ms, "
        f"p99 {row.p99_ms or 0:.1f} ms, {row.rows_per_s or 0:,.0f} rows/s"
        + (f", {row.non_2xx} non-2xx" if row.non_2xx else "")
        + (f", {row.errors} socket errors" if row.errors else "")
        + f" (load {' '.join(str(v) for v in row.load_average)})"
    )
    return row


# --- the entities section --------------------------------------------------------------------------------


def scale_entry(number: int) -> dict[str, Any]:
    """The configuration of small table `number`: an identifier and three fields."""

    def one(column: str, visible: str, kind: str, creatable: bool) -> dict[str, Any]:
        return {
            "fieldName": column,
            "fieldVisibleName": visible,
            "type": kind,
            "isCreatable": creatable,
            "isEditable": creatable,
        }

    return {
        "tableName": SCALE_TABLE.format(number),
        "tableAlias": SCALE_ALIAS.format(number),
        "isActive": True,
        "definition": {
            "identifier": "id_row",
            "isDeletable": True,
            "fields": [
                one("id_row", "idRow", "integer", False),
                one("name", "name", "string", True),
                one("amount", "amount", "integer", True),
                one("created_at", "createdAt", "datetime", False),
            ],
        },
        "childRelations": [],
    }


async def create_scale_tables(url: str, numbers: Sequence[int]) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction():
            for number in numbers:
                table = quote_ident(SCALE_TABLE.format(number))
                await conn.execute(
                    f"CREATE TABLE {table} (id_row serial PRIMARY KEY, name varchar(64) NOT NULL, amount integer, "
                    "created_at timestamp NOT NULL DEFAULT now())"
                )
                await conn.execute(f"INSERT INTO {table} (name, amount) VALUES ('a', 1), ('b', 2), ('c', 3)")
    finally:
        await conn.close()


async def save(url: str, document: list[dict[str, Any]]) -> int:
    """Save configuration entries as `dxapi config import` does (in-process) → the new version."""
    from dxapi.db import create_engine
    from dxapi.registry.store import parse_import, save_entities

    engine = create_engine(url, pool_size=1)
    try:
        return await save_entities(engine, parse_import(document), actor="benchmark", action="import")
    finally:
        await engine.dispose()


async def snapshot_seconds(url: str) -> tuple[float, int]:
    """Median seconds of reading the configuration, reflecting its tables and building the snapshot → (s, entities).

    What every worker does at its start and on every configuration change.
    """
    from dxapi.db import create_engine
    from dxapi.registry.snapshot import load_snapshot

    engine = create_engine(url, pool_size=1)
    try:
        seconds, entities = [], 0
        for _ in range(SNAPSHOT_REPEATS):
            started_at = time.perf_counter()
            snapshot = await load_snapshot(engine)
            seconds.append(time.perf_counter() - started_at)
            entities = len(snapshot.entities)
    finally:
        await engine.dispose()
    return statistics.median(seconds), entities


def entities_section(dx: Dxapi, ctx: DataContext, settings: Settings, restart: Callable[[], float]) -> list[Row]:
    """Per entity count: configure that many, restart the worker, then time the snapshot, measure RSS and
    get-by-id. The tables and entries are added to, never removed: the next count builds on the last."""
    rows, configured = [], SHOP_ENTITIES
    for count in ENTITY_COUNTS:
        numbers = range(configured - SHOP_ENTITIES + 1, count - SHOP_ENTITIES + 1)
        started_at = time.perf_counter()
        asyncio.run(create_scale_tables(dx.url, numbers))
        created_s = time.perf_counter() - started_at
        started_at = time.perf_counter()
        version = asyncio.run(save(dx.url, [scale_entry(n) for n in numbers]))
        import_s = time.perf_counter() - started_at
        started_at = time.perf_counter()
        problem = wait_for_version(dx.server, version, 1)
        reload_s = time.perf_counter() - started_at
        if problem:
            log(f"  WARNING {problem}")
        configured = count
        ready_s = restart()
        build_s, entities = asyncio.run(snapshot_seconds(dx.url))
        assert dx.server.process is not None
        idle = tree_rss(dx.server.process.pid)[1] / 2**20
        with peak_rss(dx.server.process.pid) as peak:
            row = measure(dx, by_id(dx.server.base), GET_CONNECTIONS, settings, 1, ctx.id_max)
        row.notes = {
            "entities_served": entities,
            "tables_created_s": round(created_s, 2),
            "import_s": round(import_s, 2),
            "running_worker_reload_s": round(reload_s, 2),
            "restart_ready_s": round(ready_s, 2),
            "snapshot_build_s": round(build_s, 3),
            "worker_rss_idle_mb": round(idle, 1),
            "worker_rss_peak_mb": round(peak["largest"] / 2**20, 1),
        }
        rows.append(named(row, "entities", f"{count:,} entities, get-by-id"))
        log(f"    {row.notes}")
    return rows


# --- servers and databases --------------------------------------------------------------------------------


def start_dxapi(url: str, max_batch: int) -> Dxapi:
    """`dxapi init`, `config import`, a client; one worker started and its token fetched."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DXAPI_MAX_BATCH_ITEMS": str(max_batch),
        # a 10,000-row body is about 2.3 MB: at least the default 32 MiB, even where the environment sets less
        "DXAPI_MAX_BODY_BYTES": str(max(int(os.environ.get("DXAPI_MAX_BODY_BYTES", "0")), 32 * 1024 * 1024)),
    }
    server, client = prepare_dxapi(url, argparse.Namespace(workers=1, pool_size=10), env, create_client=True)
    server.log_path = RESULTS_DIR / f"scaling-{make_url(url).database}.log"
    if server.problem or client is None:
        raise SystemExit(f"dxapi cannot run: {server.problem}")
    dx = Dxapi(server, BearerToken(server.base, *client), client[0], url)
    ready(dx)
    return dx


def ready(dx: Dxapi) -> float:
    """Start the worker and wait until it answers → seconds it took."""
    started_at = time.perf_counter()
    dx.server.problem = None
    dx.server.start()
    if not dx.server.wait_ready():
        raise SystemExit(f"dxapi does not start: {dx.server.problem}")
    seconds = time.perf_counter() - started_at
    dx.token.refresh()
    return seconds


def restart(dx: Dxapi) -> float:
    dx.server.stop()
    return ready(dx)


@contextmanager
def running(url: str, max_batch: int) -> Iterator[Dxapi]:
    dx = start_dxapi(url, max_batch)
    try:
        yield dx
    finally:
        dx.server.stop()
        disable_client(url, dx.client_id)


async def drop_database(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(make_url(url).database or '')} WITH (FORCE)")
    finally:
        await conn.close()


async def holds(url: str, products: int) -> bool:
    """Whether the database exists and holds exactly `products` products (a kept 1M database)."""
    try:
        return await count_products(url) == products
    except (OSError, asyncpg.PostgresError):
        return False


def prepare(url: str, products: int, reuse: bool) -> DataContext:
    shown = make_url(url).render_as_string(hide_password=True)
    if reuse and asyncio.run(holds(url, products)):
        removed = asyncio.run(delete_bench_rows(url))
        log(f"reusing {shown} ({products:,} products; removed {removed:,} leftover benchmark rows)")
    else:
        log(f"recreating {shown} with {products:,} products")
        started_at = time.monotonic()
        asyncio.run(recreate_database(url))
        asyncio.run(load_shop(url, products))
        log(f"data ready in {time.monotonic() - started_at:.0f} s")
    return asyncio.run(load_context(url))


def add_tax_rate_country() -> list[dict[str, Any]]:
    """The tax rates' entry of the demo configuration with a relation to their country (include depth 2)."""
    entries: list[dict[str, Any]] = orjson.loads(CONFIG_FILE.read_bytes())
    entry = next(e for e in entries if e["tableAlias"] == "tax-rates")
    return [{**entry, "childRelations": [*entry.get("childRelations", []), TAX_RATE_COUNTRY]}]


# --- output -----------------------------------------------------------------------------------------------


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def note_text(row: Row) -> str:
    n = row.notes
    if row.section == "entities":
        return (
            f"snapshot build {n['snapshot_build_s'] * 1000:,.0f} ms; worker start {n['restart_ready_s']:.1f} s; "
            f"worker RSS {n['worker_rss_idle_mb']:.0f} MB idle, {n['worker_rss_peak_mb']:.0f} MB under load; "
            f"import {n['import_s']:.1f} s, reload {n['running_worker_reload_s']:.1f} s"
        )
    found = []
    if row.section == "include" and "sample_embedded" in n:
        found.append(f"{n['sample_embedded']} rows embedded in a page of {n['sample_rows']}")
    if row.non_2xx or row.errors:
        found.append(f"{row.non_2xx} non-2xx, {row.errors} socket errors")
    return "; ".join(found)


def markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| measurement | case | req/s | p50 ms | p99 ms | rows/s | load avg 1/5/15 | notes |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        rows_per_s = fmt(r.rows_per_s, "{:,.0f}") if r.section != "entities" else "-"
        lines.append(
            f"| {r.section} | {r.case} | {fmt(r.requests_per_s, '{:,.1f}')} | {fmt(r.p50_ms, '{:.1f}')} | "
            f"{fmt(r.p99_ms, '{:.1f}')} | {rows_per_s} | {' '.join(f'{v:.2f}' for v in r.load_average)} | "
            f"{note_text(r)} |"
        )
    return "\n".join(lines)


def write(rows: Sequence[Row], meta: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "scaling.json"
    path.write_bytes(orjson.dumps({**meta, "rows": [asdict(r) for r in rows]}, option=orjson.OPT_INDENT_2))
    log(f"written to {path}")


# --- main -------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per case (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load first (default 1)")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, metavar="SECTION", help=f"repeatable: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--products", type=int, default=PRODUCTS, help="products of the main database (100,000)")
    parser.add_argument(
        "--big-products", type=int, default=BIG_PRODUCTS, help="products of the keyset comparison's big database"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep both databases at the end; a kept big database is reused by the next run",
    )
    return parser.parse_args(argv)


def main_sections(args: argparse.Namespace, url: str, settings: Settings, sections: set[str]) -> list[Row]:
    """Everything measured on the main database, with one dxapi worker."""
    ctx = prepare(url, args.products, reuse=False)
    rows: list[Row] = []
    with running(url, max(BATCHES)) as dx:
        asyncio.run(save(url, add_tax_rate_country()))
        restart(dx)  # serve the added relation without waiting for the reload
        steps: tuple[tuple[str, Callable[[], list[Row]]], ...] = (
            ("list", lambda: list_section(dx, ctx, settings)),
            ("post", lambda: post_section(dx, ctx, settings)),
            ("include", lambda: include_section(dx, ctx, settings)),
            ("keyset", lambda: keyset_rows(dx, ctx, settings)),
            ("entities", lambda: entities_section(dx, ctx, settings, lambda: restart(dx))),
        )
        for name, step in steps:
            if name in sections:
                log(f"section {name}")
                rows += step()
    return rows


def big_section(args: argparse.Namespace, big_url: str, settings: Settings) -> list[Row]:
    """The keyset comparison's second half: the same cases on the big database."""
    ctx = prepare(big_url, args.big_products, reuse=True)
    with running(big_url, max(BATCHES)) as dx:
        log("section keyset (big database)")
        return keyset_rows(dx, ctx, settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url, big_url = os.environ.get(URL_ENV, DEFAULT_URL), os.environ.get(BIG_URL_ENV, DEFAULT_BIG_URL)
    sections = set(args.only or SECTIONS)
    settings = Settings(args.duration, args.warmup)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    meta: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "load_average_start": load_average(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "workers": 1,
        "products": args.products,
        "big_products": args.big_products,
        "cpus": os.cpu_count(),
    }
    started_at = time.monotonic()
    rows: list[Row] = []
    try:
        rows = main_sections(args, url, settings, sections)
        if "keyset" in sections:
            rows += big_section(args, big_url, settings)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if not args.keep:
            for database in (url, big_url):
                asyncio.run(drop_database(database))
    meta["load_average_end"] = load_average()
    meta["seconds"] = round(time.monotonic() - started_at)
    print()
    print(markdown(sorted(rows, key=lambda r: SECTIONS.index(r.section))))
    start, end = (" ".join(map(str, meta[key])) for key in ("load_average_start", "load_average_end"))
    print(f"\n{meta['generated_at']}, commit {meta['commit']}, load average {start} at the start, {end} at the end")
    write(rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
