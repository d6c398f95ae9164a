"""The benchmark scenarios: what each one sends, and how two servers' answers are compared.

Fed by `data.DataContext` and a server's base URL; feeds `run`, which hands each `Target` to `load.run_load`
(placeholders {id} and {uniq} are filled per request there).
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.data import BENCH_SKU_PREFIX, PAGE, DataContext

BATCH_ROWS = 1000
OFFSET_PAGES = 100  # offset scenario pages through the first 100 pages, see offset_target()
PRODUCTS_PATH = "/dynamic-entity/products"
# A fresh key per request ({uniq}, as the body's): every keyed write executes, none is a replay
IDEMPOTENCY_KEY = ("Idempotency-Key", "bench-{uniq}")


@dataclass(frozen=True, slots=True)
class Target:
    """What to send: `urls` may hold {id} (random id per request); `body` may hold {uniq} and {id}; the
    values of `headers` (sent besides the run's own) may hold {uniq}, the same string as the body's."""

    urls: list[str]
    method: str = "GET"
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def keyed(target: Target) -> Target:
    """`target` with a fresh `Idempotency-Key` on every request."""
    return dataclasses.replace(target, headers=(*target.headers, IDEMPOTENCY_KEY))


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    build: Callable[[str, DataContext], Target]
    connections: int
    goal: float | None = None  # minimum dxapi/reference ratio from DESIGN.md §8
    batch: int = 1  # rows written per request: rows/s = successful requests/s x batch
    volatile: frozenset[str] = frozenset()  # response keys that legitimately differ between servers


def query(**params: str) -> str:
    """Percent-encode brackets and JSON as a careful client does.

    >>> query(**{"page[limit]": "1"})
    'page%5Blimit%5D=1'
    """
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def by_id_target(base: str, ctx: DataContext) -> Target:
    return Target([f"{base}{PRODUCTS_PATH}/{{id}}"])


def offset_target(base: str, ctx: DataContext) -> Target:
    # The first pages only: a deep OFFSET makes PostgreSQL walk and drop up to 100,000 index entries per
    # request, which measures the database, not the API server. Clients pick random pages among them.
    pages = min(OFFSET_PAGES, max(1, ctx.id_max // PAGE))
    return Target(
        [
            f"{base}{PRODUCTS_PATH}?" + query(**{"page[offset]": str(n * PAGE), "page[limit]": str(PAGE)})
            for n in range(pages)
        ]
    )


def keyset_target(base: str, ctx: DataContext) -> Target:
    # page[offset]=0 too: Spryker applies page[limit] only when page[offset] is present as well, and the
    # comparison must not depend on which reading a server follows.
    return Target(
        [
            f"{base}{PRODUCTS_PATH}?"
            + query(
                **{
                    "filter[products.updatedAt]": orjson.dumps({"gt": cursor}).decode(),
                    "sort": "updatedAt",
                    "page[offset]": "0",
                    "page[limit]": str(PAGE),
                }
            )
            for cursor in ctx.cursors
        ]
    )


SPARSE_FIELDS = "sku,name,price"


def fields_target(base: str, ctx: DataContext) -> Target:
    # The first pages by offset, as page-offset does, but only three columns (plus the identifier) per row.
    pages = min(OFFSET_PAGES, max(1, ctx.id_max // PAGE))
    return Target(
        [
            f"{base}{PRODUCTS_PATH}?"
            + query(**{"fields[products]": SPARSE_FIELDS, "page[offset]": str(n * PAGE), "page[limit]": str(PAGE)})
            for n in range(pages)
        ]
    )


def post_target(base: str, ctx: DataContext, rows: int = BATCH_ROWS) -> Target:
    """A POST of `rows` new products (the scenario's 1000; `scaling` varies it)."""
    items = [
        {
            "sku": f"{BENCH_SKU_PREFIX}{{uniq}}-{i:04d}",  # {uniq}: unique per request, see load.py
            "name": f"Bench Product {i}",
            "description": "Created by the benchmark",
            "fkCategory": ctx.category_ids[i % len(ctx.category_ids)],
            "fkTaxRate": ctx.tax_rate_ids[i % len(ctx.tax_rate_ids)],
            "price": f"{i % 500 + 1}.{i % 100:02d}",
            "isActive": i % 10 != 0,
            "attributes": '{"color":"blue"}',
            "availableFrom": "2026-03-01",
        }
        for i in range(rows)
    ]
    return Target([f"{base}{PRODUCTS_PATH}"], "POST", orjson.dumps({"data": items}).decode())


def patch_target(base: str, ctx: DataContext) -> Target:
    body = orjson.dumps({"data": {"name": "Patched {uniq}", "price": "12.34"}}).decode()
    return Target([f"{base}{PRODUCTS_PATH}/{{id}}"], "PATCH", body)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("get-by-id", "GET /products/{id}, random id", by_id_target, 16, goal=1.0),
    Scenario(
        "page-offset", f"GET page of {PAGE} by page[offset], first {OFFSET_PAGES} pages", offset_target, 16, goal=1.0
    ),
    Scenario("page-keyset", f"GET page of {PAGE} after a random updatedAt", keyset_target, 16, goal=1.0),
    Scenario("page-fields", f"GET page of {PAGE} with fields[products]={SPARSE_FIELDS}", fields_target, 16, goal=1.0),
    # few connections: each request carries 1000 rows, more in flight only queue up on 2 cores
    Scenario(
        "post-batch",
        f"POST {BATCH_ROWS} new rows in one request",
        post_target,
        4,
        goal=0.9,
        batch=BATCH_ROWS,
        volatile=frozenset({"idProduct", "sku", "createdAt", "updatedAt"}),
    ),
    Scenario(
        "patch-one",
        "PATCH /products/{id}: name and price, random id",
        patch_target,
        16,
        goal=0.8,
        volatile=frozenset({"updatedAt"}),  # each server stamps its own update
    ),
)


def materialise(target: Target, sample_id: int, unique: str) -> tuple[str, bytes | None, dict[str, str]]:
    """One concrete request out of a Target, for the equality check: first URL, fixed id, given {uniq} →
    (url, body, the target's own headers)."""
    url = target.urls[0].replace("{id}", str(sample_id))
    body = None
    if target.body is not None:
        body = target.body.replace("{uniq}", unique).replace("{id}", str(sample_id)).encode()
    return url, body, {name: value.replace("{uniq}", unique) for name, value in target.headers}


def first_difference(left: Any, right: Any, volatile: frozenset[str], path: str = "$") -> str | None:
    """Where two JSON values first differ, ignoring `volatile` object keys; None when equal."""
    if isinstance(left, dict) and isinstance(right, dict):
        keys = (left.keys() | right.keys()) - volatile
        missing = sorted(k for k in keys if k not in left or k not in right)
        if missing:
            return f"{path}: key(s) {missing} present in only one response"
        for key in sorted(keys):
            found = first_difference(left[key], right[key], volatile, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return f"{path}: {len(left)} items vs {len(right)}"
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            found = first_difference(a, b, volatile, f"{path}[{index}]")
            if found:
                return found
        return None
    if type(left) is not type(right) or left != right:
        return f"{path}: reference {left!r:.80} vs dxapi {right!r:.80}"
    return None
