"""Thin reference server: the baseline dxapi's speed is measured against (DESIGN.md §8).

Starlette + an asyncpg pool (the driver dxapi uses on PostgreSQL) + hand-written SQL for exactly one table,
`shop_product`, exposed as `products` in dxapi's wire format (DESIGN.md §4) for the routes `benchmarks.run`
drives. No configuration, no reflection, no auth, naive validation: whatever dxapi costs on top of this is
the price of being generic. Run it on its own with

    python -m benchmarks.reference --dsn postgresql://postgres@127.0.0.1:5432/dxapi_bench --port 8101

Routes (all under /dynamic-entity/products):
  GET   /{id}                                       one row → {"data":{…}}
  GET   ?page[offset]=N&page[limit]=100             rows ordered by id_product
  GET   ?filter[products.updatedAt]={"gt":"<iso>"}&sort=updatedAt&page[limit]=100
                                                    keyset page ordered by updated_at, id_product
  GET   ?fields[products]=sku,name,price&…          any list above with only those columns (and idProduct)
  POST  {"data":[{…},…]}                            multi-row INSERT … RETURNING → 201
  PATCH /{id} {"data":{…}}                          UPDATE … RETURNING → 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DSN_ENV = "DXAPI_REFERENCE_DSN"
POOL_SIZE_ENV = "DXAPI_REFERENCE_POOL_SIZE"
DEFAULT_POOL_SIZE = 10
DEFAULT_PAGE_LIMIT = 1000  # Spryker's default page size
MAX_PAGE_LIMIT = 10_000
# PostgreSQL's bind protocol carries at most 32767 parameters per statement; 3000 rows x 9 columns fits.
MAX_ROWS_PER_INSERT = 3000

# (visible name, column) in response order: the same names examples/shop-config.json gives dxapi.
FIELDS: tuple[tuple[str, str], ...] = (
    ("idProduct", "id_product"),
    ("sku", "sku"),
    ("name", "name"),
    ("description", "description"),
    ("fkCategory", "fk_category"),
    ("fkTaxRate", "fk_tax_rate"),
    ("price", "price"),
    ("isActive", "is_active"),
    ("attributes", "attributes"),
    ("availableFrom", "available_from"),
    ("createdAt", "created_at"),
    ("updatedAt", "updated_at"),
)
COLUMNS = ", ".join(column for _, column in FIELDS)

SELECT_BY_ID = f"SELECT {COLUMNS} FROM shop_product WHERE id_product = $1"

Parser = Callable[[Any], Any]
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")


def parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def parse_int(value: Any) -> int:
    # bool is an int subclass in Python but not an integer in JSON
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("expected an integer")
    return value


def parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected a boolean")
    return value


def parse_decimal(value: Any) -> Decimal:
    """`"12.50"` or `12.5` → Decimal; anything with an exponent, `+`, NaN … is rejected like Spryker does."""
    if isinstance(value, bool):
        raise TypeError("expected a decimal")
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError("expected a decimal")
    if not _DECIMAL.fullmatch(value):
        raise ValueError("not a plain decimal number")
    return Decimal(value)


def parse_date(value: Any) -> dt.date:
    return dt.date.fromisoformat(parse_str(value))  # ValueError for a malformed date


def parse_datetime(value: str) -> dt.datetime:
    """`"2024-05-01T10:00:00Z"` → naive UTC datetime: the columns are `timestamp without time zone`."""
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


# visible name → (column, parser) for the fields a client may write; the rest are read-only.
WRITABLE: dict[str, tuple[str, Parser]] = {
    "sku": ("sku", parse_str),
    "name": ("name", parse_str),
    "description": ("description", parse_str),
    "fkCategory": ("fk_category", parse_int),
    "fkTaxRate": ("fk_tax_rate", parse_int),
    "price": ("price", parse_decimal),
    "isActive": ("is_active", parse_bool),
    "attributes": ("attributes", parse_str),
    "availableFrom": ("available_from", parse_date),
}
INSERT_COLUMNS = tuple(column for column, _ in WRITABLE.values())
REQUIRED_ON_CREATE = ("sku", "name", "fkCategory", "price")
READ_ONLY = frozenset(name for name, _ in FIELDS) - WRITABLE.keys()


def render_row(row: asyncpg.Record, fields: Sequence[tuple[str, str]] = FIELDS) -> dict[str, Any]:
    """One row → the wire object; decimals as strings (orjson cannot encode Decimal; §4 wants strings)."""
    item = {name: row[column] for name, column in fields}
    if item.get("price") is not None:
        item["price"] = str(item["price"])
    return item


def sparse_fields(value: str | None) -> tuple[tuple[str, str], ...] | None:
    """`fields[products]=price,sku` → idProduct and those, in response order, as dxapi answers; None: unknown."""
    if value is None:
        return FIELDS
    names = {name.strip() for name in value.split(",")} | {"idProduct"}
    chosen = tuple((name, column) for name, column in FIELDS if name in names)
    return chosen if len(chosen) == len(names) else None


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def error(code: str, status: int, message: str) -> dict[str, Any]:
    return {"code": code, "status": status, "message": message}


def errors_response(errors: Sequence[dict[str, Any]]) -> Response:
    return json_response(list(errors), status=errors[0]["status"])


def validate_item(item: Any, path: str, *, creating: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check one body item by hand → (column → value, errors); POST drops explicit nulls, PATCH keeps them."""
    if not isinstance(item, dict):
        return {}, [error("1301", 400, f"{path} must be an object")]
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for key, value in item.items():
        spec = WRITABLE.get(key)
        if spec is None:
            if key in READ_ONLY:
                if value is not None:
                    errors.append(error("1304", 400, f"{path}.{key} may not be written"))
            else:
                errors.append(error("1311", 400, f"{path}.{key} is not a known field"))
            continue
        column, parse = spec
        if value is None:
            if not creating:
                values[column] = None
            continue
        try:
            values[column] = parse(value)
        except TypeError as exc:
            errors.append(error("1305", 400, f"{path}.{key}: {exc}"))
        except ValueError as exc:
            errors.append(error("1306", 400, f"{path}.{key}: {exc}"))
    if creating:
        errors.extend(
            error("1307", 400, f"{path}.{name} is required") for name in REQUIRED_ON_CREATE if item.get(name) is None
        )
    return values, errors


def build_insert(rows: Sequence[dict[str, Any]]) -> tuple[str, list[Any]]:
    """Rows of column → value → one multi-row INSERT; an omitted column becomes DEFAULT, as in Spryker.

    >>> sql, args = build_insert([{"sku": "A-1", "name": "A", "fk_category": 3, "price": Decimal(1)}])
    >>> sql.split(" VALUES ")[1].split(" RETURNING ")[0]
    '($1, $2, DEFAULT, $3, DEFAULT, $4, DEFAULT, DEFAULT, DEFAULT)'
    >>> args
    ['A-1', 'A', 3, Decimal('1')]
    """
    args: list[Any] = []
    tuples: list[str] = []
    for row in rows:
        cells: list[str] = []
        for column in INSERT_COLUMNS:
            if column in row:
                args.append(row[column])
                cells.append(f"${len(args)}")
            else:
                cells.append("DEFAULT")
        tuples.append(f"({', '.join(cells)})")
    sql = f"INSERT INTO shop_product ({', '.join(INSERT_COLUMNS)}) VALUES {', '.join(tuples)} RETURNING {COLUMNS}"
    return sql, args


async def read_json_body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None


def pool_of(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


async def get_product(request: Request) -> Response:
    row = await pool_of(request).fetchrow(SELECT_BY_ID, request.path_params["id"])
    if row is None:
        return errors_response([error("1303", 404, "product not found")])
    return json_response({"data": render_row(row)})


async def list_products(request: Request) -> Response:  # noqa: C901 - one naive route, read top to bottom
    """Offset pages ordered by id, or `filter[…updatedAt]` + `sort=updatedAt` keyset pages; nothing else."""
    query = request.query_params
    try:
        offset = int(query.get("page[offset]", "0"))
        limit = int(query.get("page[limit]", str(DEFAULT_PAGE_LIMIT)))
    except ValueError:
        return errors_response([error("1316", 400, "page[offset] and page[limit] must be integers")])
    if offset < 0 or not 0 < limit <= MAX_PAGE_LIMIT:
        return errors_response([error("1316", 400, "page out of range")])

    fields = sparse_fields(query.get("fields[products]"))
    if fields is None:
        return errors_response([error("2040", 400, "fields[products] names an unknown field")])
    args: list[Any] = []
    where = ""
    for key, raw in query.items():
        if not key.startswith("filter["):
            continue
        if where or key.removesuffix("]").split(".", 1)[-1] != "updatedAt":
            return errors_response([error("1315", 400, f"{key} is not supported by the reference")])
        operator, value = "=", raw
        if raw.startswith("{"):
            # naive: exactly one of the operators the benchmark sends
            try:
                condition = orjson.loads(raw)
            except orjson.JSONDecodeError:
                condition = None
            if not isinstance(condition, dict) or len(condition) != 1 or not condition.keys() <= {"gt", "gte"}:
                return errors_response([error("1315", 400, "only gt/gte on updatedAt is supported")])
            op, value = next(iter(condition.items()))
            operator = ">" if op == "gt" else ">="
        try:
            args.append(parse_datetime(value))
        except (TypeError, ValueError):
            return errors_response([error("1306", 400, f"{key} must be an ISO 8601 datetime")])
        where = f"WHERE updated_at {operator} $1"

    sort = query.get("sort", "")
    if sort == "updatedAt":
        order = "ORDER BY updated_at, id_product"
    elif sort in ("", "idProduct"):
        order = "ORDER BY id_product"
    else:
        return errors_response([error("1315", 400, f"sort={sort} is not supported by the reference")])

    args += [limit, offset]
    columns = ", ".join(column for _, column in fields)
    sql = f"SELECT {columns} FROM shop_product {where} {order} LIMIT ${len(args) - 1} OFFSET ${len(args)}"
    rows = await pool_of(request).fetch(sql, *args)
    return json_response({"data": [render_row(row, fields) for row in rows]})


async def create_products(request: Request) -> Response:
    payload = await read_json_body(request)
    items = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        return errors_response([error("1301", 400, 'body must be {"data":[{…},…]}')])
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        values, item_errors = validate_item(item, f"products[{index}]", creating=True)
        rows.append(values)
        errors += item_errors
    if errors:
        return errors_response(errors)

    saved: list[asyncpg.Record] = []
    try:
        async with pool_of(request).acquire() as conn, conn.transaction():
            for start in range(0, len(rows), MAX_ROWS_PER_INSERT):
                sql, args = build_insert(rows[start : start + MAX_ROWS_PER_INSERT])
                saved += await conn.fetch(sql, *args)
    except asyncpg.UniqueViolationError:
        return errors_response([error("1309", 400, "duplicate entry")])
    except asyncpg.ForeignKeyViolationError:
        return errors_response([error("1306", 400, "reference to a missing row")])
    return json_response({"data": [render_row(row) for row in saved]}, status=201)


async def update_product(request: Request) -> Response:
    payload = await read_json_body(request)
    item = payload.get("data") if isinstance(payload, dict) else None
    values, errors = validate_item(item, "products", creating=False)
    if errors:
        return errors_response(errors)
    product_id = request.path_params["id"]
    if not values:
        return await get_product(request)

    args = list(values.values())
    assignments = ", ".join(f"{column} = ${number}" for number, column in enumerate(values, start=1))
    # The demo's updatedAt is maintained (autoValue): the same work dxapi does on every update.
    assignments += ", updated_at = timezone('UTC', now())"
    sql = f"UPDATE shop_product SET {assignments} WHERE id_product = ${len(args) + 1} RETURNING {COLUMNS}"
    try:
        row = await pool_of(request).fetchrow(sql, *args, product_id)
    except asyncpg.UniqueViolationError:
        return errors_response([error("1309", 400, "duplicate entry")])
    except asyncpg.ForeignKeyViolationError:
        return errors_response([error("1306", 400, "reference to a missing row")])
    if row is None:
        return errors_response([error("1303", 404, "product not found")])
    return json_response({"data": render_row(row)})


def asyncpg_dsn(url: str) -> str:
    """Accept SQLAlchemy spellings too: `postgresql+asyncpg://…` → `postgresql://…`."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def create_app(dsn: str | None = None, pool_size: int | None = None) -> Starlette:
    """App factory; uvicorn's worker processes call it without arguments, so it falls back to the env."""
    dsn = asyncpg_dsn(dsn or os.environ[DSN_ENV])
    size = pool_size or int(os.environ.get(POOL_SIZE_ENV, DEFAULT_POOL_SIZE))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=min(2, size), max_size=size)
        try:
            yield
        finally:
            await app.state.pool.close()

    routes = [
        Route("/dynamic-entity/products", list_products, methods=["GET"]),
        Route("/dynamic-entity/products", create_products, methods=["POST"]),
        Route("/dynamic-entity/products/{id:int}", get_product, methods=["GET"]),
        Route("/dynamic-entity/products/{id:int}", update_product, methods=["PATCH"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get(DSN_ENV), required=DSN_ENV not in os.environ)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE, help="connections per worker")
    args = parser.parse_args(argv)
    # uvicorn's worker processes import the factory afresh: hand the settings over through the environment
    os.environ[DSN_ENV] = args.dsn
    os.environ[POOL_SIZE_ENV] = str(args.pool_size)
    uvicorn.run(
        "benchmarks.reference:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # a thin baseline: no access log (it costs more than the handler itself under load)
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
