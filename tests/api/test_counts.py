"""Counts (``Prefer: count=exact|estimated``; docs/fields.md) on every backend.

Totals are checked against ``SELECT count(*)`` run on the database itself. The estimate path is driven at the
execution layer with a threshold of 0 (the shared server keeps the default), on the backend's own engine and, on
PostgreSQL, on the asyncpg pool the server reads through.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from dxapi.db import create_driver_pool
from dxapi.execute.read import execute_page
from dxapi.plan.build import build_read_plan
from dxapi.registry.snapshot import load_snapshot
from dxapi.request.params import parse_read_request
from dxapi.request.prefer import parse_prefer_count
from tests.api.test_read import PRODUCT, assert_error, db_rows, db_scalar, ok
from tests.conftest import Backend

PRODUCTS = "/dynamic-entity/products"


def counted(api: httpx.Client, params: Any, prefer: str, path: str = PRODUCTS) -> httpx.Response:
    response = api.get(path, params=params, headers={"Prefer": prefer})
    assert response.status_code < 500, response.text
    return response


def total(backend: Backend, *where: Any) -> int:
    found: int = db_scalar(backend, sa.select(sa.func.count()).select_from(PRODUCT).where(*where))
    return found


@pytest.mark.parametrize(
    ("params", "where"),
    [
        pytest.param({}, (), id="all"),
        pytest.param({"filter[products.price]": '{"gt":"500"}'}, (PRODUCT.c.price > 500,), id="filtered"),
        pytest.param({"filter[products.sku]": "NO-SUCH-SKU"}, (sa.false(),), id="none"),
        pytest.param({"filter[products.idProduct]": '{"in":[]}'}, (sa.false(),), id="empty-in"),
    ],
)
def test_exact_count_is_every_matching_row_not_the_page(
    api: httpx.Client, backend: Backend, params: dict[str, str], where: Any
) -> None:
    response = counted(api, {**params, "page[limit]": "5", "page[offset]": "2"}, "count=exact")
    body = ok(response)
    assert list(body) == ["data", "meta"]
    assert body["meta"] == {"total": total(backend, *where)}
    assert response.headers["preference-applied"] == "count=exact"
    assert len(body["data"]) == min(5, max(0, body["meta"]["total"] - 2))


def test_a_cursor_list_counts_all_matching_rows_on_every_page(api: httpx.Client, backend: Backend) -> None:
    params = {"sort": "price", "page[limit]": "100", "page[cursor]": "", "fields[products]": "sku"}
    body = ok(counted(api, params, "count=exact"))
    assert list(body) == ["data", "links", "meta"] and body["meta"] == {"total": total(backend)}
    second = ok(counted(api, None, "count=exact", body["links"]["next"]))
    assert second["meta"] == body["meta"]


def test_without_the_header_the_answer_is_unchanged(api: httpx.Client, backend: Backend) -> None:
    for prefer in (None, "return=minimal", "count=bogus", "count", "counting=exact", "count=bogus, count=exact"):
        headers = {} if prefer is None else {"Prefer": prefer}
        response = api.get(PRODUCTS, params={"page[limit]": "20"}, headers=headers)
        assert response.content == orjson.dumps({"data": db_rows(backend, "products")[:20]}), prefer
        assert "preference-applied" not in response.headers


@pytest.mark.parametrize(
    "prefer", ["count=exact", 'COUNT="exact"', "respond-async, count=exact", "return=minimal; x=1, count=exact; y"]
)
def test_the_count_token_among_others(api: httpx.Client, backend: Backend, prefer: str) -> None:
    response = counted(api, {"page[limit]": "1"}, prefer)
    assert ok(response)["meta"] == {"total": total(backend)}
    assert response.headers["preference-applied"] == "count=exact"


def test_estimated_below_the_threshold_is_exact(api: httpx.Client, backend: Backend) -> None:
    # 300 products, far below DXAPI_COUNT_EXACT_BELOW (10,000): every backend counts them
    response = counted(api, {"page[limit]": "1"}, "count=estimated")
    assert ok(response)["meta"] == {"total": total(backend), "totalEstimated": False}
    assert response.headers["preference-applied"] == "count=estimated"


def test_a_single_row_ignores_the_count(api: httpx.Client) -> None:
    response = api.get(f"{PRODUCTS}/1", headers={"Prefer": "count=exact"})
    assert list(ok(response)) == ["data"] and "preference-applied" not in response.headers


def test_count_errors_are_the_lists_errors(api: httpx.Client) -> None:
    assert_error(counted(api, {"filter[products.nope]": "1"}, "count=exact"), 400, "1315")


def test_parse_prefer_count() -> None:
    assert parse_prefer_count([]) is None
    assert parse_prefer_count(["return=minimal", "count=estimated"]) == "estimated"
    assert parse_prefer_count(["count=exact, count=estimated"]) == "exact"
    assert parse_prefer_count(["count=planned"]) is None


@pytest.mark.parametrize(
    ("pairs", "where"),
    [
        pytest.param([], (), id="all"),
        pytest.param([("filter[products.price]", '{"gt":"100"}')], (PRODUCT.c.price > 100,), id="filtered"),
    ],
)
def test_an_estimate_above_the_threshold_is_the_planners(
    backend: Backend, pairs: list[tuple[str, str]], where: Any
) -> None:
    if backend.name == "postgresql":
        backend.sql("ANALYZE shop_product")
    elif backend.name == "mysql":
        backend.sql("ANALYZE TABLE shop_product")
    settings = backend.settings.model_copy(update={"count_exact_below": 0})

    async def run(engine: Any, through: str) -> Any:
        snapshot = await load_snapshot(engine)
        read = parse_read_request([*pairs, ("page[limit]", "3")], settings.max_filter_values)
        entity = snapshot.entities["products"]
        plan = build_read_plan(snapshot, entity, read, settings, allows=lambda a, b: True, count="estimated")
        pool = await create_driver_pool(backend.url, size=1, timeout=5) if through == "driver-pool" else None
        try:
            return await execute_page(engine, plan, pool)
        finally:
            if pool is not None:
                await pool.pool.close()

    exact = total(backend, *where)
    # PostgreSQL's server reads through the asyncpg pool; the engine path is the one of SQLite and MariaDB
    for through in ["engine", "driver-pool"] if backend.name == "postgresql" else ["engine"]:
        page = backend.with_engine(lambda engine, through=through: run(engine, through))
        assert len(page.items) == 3
        if backend.name == "sqlite":
            assert (page.total, page.estimated) == (exact, False)  # SQLite has no estimate: always exact
        else:
            assert page.estimated is True, through
            assert page.total is not None and exact / 3 <= page.total <= exact * 3, (page.total, exact, through)


def test_openapi_describes_fields_prefer_meta_and_preference_applied(api: httpx.Client) -> None:
    document = ok(api.get("/dynamic-entity/openapi.json"))
    listing = document["paths"]["/dynamic-entity/products"]["get"]
    names = {p["name"]: p["in"] for p in listing["parameters"]}
    assert names["fields[products]"] == names["fields[productStocks]"] == names["fields[productTaxRate]"] == "query"
    assert names["Prefer"] == "header"
    success = listing["responses"]["200"]
    assert set(success["headers"]["Preference-Applied"]["schema"]["enum"]) == {"count=exact", "count=estimated"}
    meta = success["content"]["application/json"]["schema"]["properties"]["meta"]
    assert meta["required"] == ["total"] and set(meta["properties"]) == {"total", "totalEstimated"}
    one = document["paths"]["/dynamic-entity/products/{id}"]["get"]
    assert {p["name"] for p in one["parameters"]} >= {"fields[products]", "include"}
    assert "Prefer" not in {p["name"] for p in one["parameters"]}
