"""Relation filters and filtered includes (issue 14).

* ``filter[{relation}.{field}]`` keeps the rows with at least one related row matching (EXISTS), checked
  against the read scope of the related entity; chains of relations; inside groups; a prefix that names no
  relation stays the entity's own field (Spryker).
* ``filter[include.{chain}.{field}]`` restricts the embedded rows of an included relation only.

Expectations come from the demo shop's rows read straight from the database and joined in Python. The
self-relation and DELETE cases run on a table of their own (``fr_node``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.api.test_read import ALL, assert_error, data, db_rows, get, grouped
from tests.conftest import Backend, add_client, config_field, fetch_token, serving

Row = dict[str, Any]


def ids(items: list[Row], name: str) -> list[Any]:
    return [item[name] for item in items]


def listed(api: httpx.Client, alias: str, params: dict[str, str], name: str) -> list[Any]:
    return ids(data(api, f"/{alias}", {**params, "page[limit]": ALL}), name)


# --- relation filters on the shop ------------------------------------------------------------------------------


def test_countries_with_a_tax_rate_of_at_least_21(api: httpx.Client, backend: Backend) -> None:
    rates = grouped(db_rows(backend, "tax-rates"), "fkCountry")
    countries = db_rows(backend, "countries")
    expected = [
        c["idCountry"] for c in countries if any(Decimal(r["rate"]) >= 21 for r in rates.get(c["idCountry"], []))
    ]
    assert expected and len(expected) < len(countries)
    params = {"filter[countryTaxRates.rate]": '{"gte":"21"}'}
    assert listed(api, "countries", params, "idCountry") == expected


def test_terms_through_one_relation_are_matched_by_one_related_row(api: httpx.Client, backend: Backend) -> None:
    """Top-level filters through a relation hold for the same related row; as separate `and` elements each
    may be matched by another row (the client picks which it means)."""
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    products = db_rows(backend, "products")

    def has(s: Row) -> tuple[bool, bool]:
        return s["warehouse"] == "WH-BERLIN", s["quantity"] > 250

    same_row = [p["idProduct"] for p in products if any(all(has(s)) for s in stocks.get(p["idProduct"], []))]
    any_rows = [
        p["idProduct"]
        for p in products
        if any(has(s)[0] for s in stocks.get(p["idProduct"], []))
        and any(has(s)[1] for s in stocks.get(p["idProduct"], []))
    ]
    assert same_row and set(same_row) < set(any_rows)
    together = {"filter[productStocks.warehouse]": "WH-BERLIN", "filter[productStocks.quantity]": '{"gt":250}'}
    assert listed(api, "products", together, "idProduct") == same_row
    apart = [{"productStocks.warehouse": "WH-BERLIN"}, {"productStocks.quantity": {"gt": 250}}]
    assert listed(api, "products", {"filter[and]": json.dumps(apart)}, "idProduct") == any_rows
    one_element = [{"productStocks.warehouse": "WH-BERLIN", "productStocks.quantity": {"gt": 250}}]
    assert listed(api, "products", {"filter[and]": json.dumps(one_element)}, "idProduct") == same_row


def test_relation_from_the_child_side(api: httpx.Client, backend: Backend) -> None:
    rates = {r["idTaxRate"]: r for r in db_rows(backend, "tax-rates")}
    products = db_rows(backend, "products")
    expected = [
        p["idProduct"] for p in products if p["fkTaxRate"] is not None and Decimal(rates[p["fkTaxRate"]]["rate"]) > 10
    ]
    assert expected and len(expected) < len(products)
    assert listed(api, "products", {"filter[productTaxRate.rate]": '{"gt":"10"}'}, "idProduct") == expected


@pytest.mark.parametrize(
    "key",
    ["categoryProducts.productStocks.quantity", "categories.categoryProducts.productStocks.quantity"],
    ids=["chain", "chain-after-the-alias-prefix"],
)
def test_a_chain_of_two_relations(api: httpx.Client, backend: Backend, key: str) -> None:
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    products = grouped(db_rows(backend, "products"), "fkCategory")
    categories = db_rows(backend, "categories")
    expected = [
        c["idCategory"]
        for c in categories
        if any(s["quantity"] >= 495 for p in products.get(c["idCategory"], []) for s in stocks.get(p["idProduct"], []))
    ]
    assert expected and len(expected) < len(categories)
    assert listed(api, "categories", {f"filter[{key}]": '{"gte":495}'}, "idCategory") == expected


def test_relation_filter_inside_groups(api: httpx.Client, backend: Backend) -> None:
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    products = db_rows(backend, "products")
    expected = [
        p["idProduct"]
        for p in products
        if p["idProduct"] <= 5 or not any(s["warehouse"] == "WH-BERLIN" for s in stocks.get(p["idProduct"], []))
    ]
    group = [{"products.idProduct": {"lte": 5}}, {"not": {"productStocks.warehouse": "WH-BERLIN"}}]
    assert 5 < len(expected) < len(products)
    assert listed(api, "products", {"filter[or]": json.dumps(group)}, "idProduct") == expected


def test_a_prefix_that_names_no_relation_is_still_the_own_field(api: httpx.Client, backend: Backend) -> None:
    # `stocks` is an alias, not a relation of products: Spryker's ignored prefix, as before.
    assert listed(api, "products", {"filter[stocks.sku]": "SKU-000042"}, "sku") == ["SKU-000042"]
    assert_error(
        get(api, "/products", {"filter[stocks.quantity]": "1"}),
        400,
        "1315",
        message="Filter field `quantity` for table alias `products` not found.",
    )


@pytest.mark.parametrize(
    ("key", "code", "message"),
    [
        pytest.param(
            "productStocks.nope", "1315", "Filter field `nope` for table alias `stocks` not found.", id="related-field"
        ),
        pytest.param(
            "productStocks.sku", "1315", "Filter field `sku` for table alias `stocks` not found.", id="own-field-name"
        ),
        pytest.param(
            "products.nope.quantity",
            "1313",
            "Relation `nope` not found. Please check the requested relation name and try again.",
            id="unknown-relation-in-a-chain",
        ),
        pytest.param(
            "productStocks.nope.quantity",
            "1313",
            "Relation `nope` not found. Please check the requested relation name and try again.",
            id="unknown-relation-of-the-related-entity",
        ),
    ],
)
def test_relation_filter_errors(api: httpx.Client, key: str, code: str, message: str) -> None:
    assert_error(get(api, "/products", {f"filter[{key}]": "1"}), 400, code, message=message)


def test_relation_chain_is_bounded(api: httpx.Client, backend: Backend) -> None:
    depth = backend.settings.max_include_depth
    key = ".".join(["categoryProducts", "productStocks", *["x"] * (depth - 1), "quantity"])
    assert_error(get(api, "/categories", {f"filter[{key}]": "1"}), 400, "2034", mentions=[str(depth + 1), str(depth)])


def test_the_related_entity_needs_read_scope(api: httpx.Client, backend: Backend) -> None:
    async def products_only(engine: Any) -> tuple[str, str]:
        return await add_client(engine, "relation filter reader", ["products:read"])

    client_id, secret = backend.with_engine(products_only)
    headers = {"Authorization": f"Bearer {fetch_token(backend.base_url, client_id, secret)}"}

    def fetch(params: dict[str, str]) -> httpx.Response:
        return httpx.get(f"{backend.base_url}/dynamic-entity/products", params=params, headers=headers, timeout=30)

    assert fetch({"filter[products.idProduct]": "1"}).status_code == 200
    for params in (
        {"filter[productStocks.quantity]": '{"gt":0}'},
        {"filter[productStocks.nope]": "1"},  # 403 before 1315: nothing of stocks is told
        {"filter[or]": json.dumps([{"products.idProduct": 1}, {"productStocks.quantity": 0}])},
        {"include": "productStocks", "filter[include.productStocks.quantity]": '{"gt":0}'},
    ):
        assert_error(fetch(params), 403, "4003", mentions=["stocks:read"])


# --- filtered includes -----------------------------------------------------------------------------------------


def test_include_filter_restricts_the_embedded_rows_only(api: httpx.Client, backend: Backend) -> None:
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    products = db_rows(backend, "products")
    params = {"include": "productStocks", "filter[include.productStocks.quantity]": '{"gt":400}', "page[limit]": ALL}
    items = data(api, "/products", params)
    expected = [
        {**p, "productStocks": [s for s in stocks.get(p["idProduct"], []) if s["quantity"] > 400]} for p in products
    ]
    assert items == expected
    assert any(i["productStocks"] == [] for i in items) and any(i["productStocks"] for i in items)
    # Also the root, when the client says so with a relation filter of its own.
    both = {**params, "filter[productStocks.quantity]": '{"gt":400}'}
    assert data(api, "/products", both) == [item for item in expected if item["productStocks"]]


def test_include_filters_on_two_levels_and_on_a_single_row(api: httpx.Client, backend: Backend) -> None:
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    products = grouped(db_rows(backend, "products"), "fkCategory")
    params = {
        "include": "categoryProducts.productStocks",
        "filter[include.categoryProducts.isActive]": "true",
        "filter[include.categoryProducts.productStocks.warehouse]": '{"in":["WH-BERLIN","WH-VIENNA"]}',
        "filter[include.categoryProducts.productStocks.quantity]": '{"lt":250}',
    }

    def expected(category: Row) -> Row:
        return {
            **category,
            "categoryProducts": [
                {
                    **p,
                    "productStocks": [
                        s
                        for s in stocks.get(p["idProduct"], [])
                        if s["warehouse"] in ("WH-BERLIN", "WH-VIENNA") and s["quantity"] < 250
                    ],
                }
                for p in products.get(category["idCategory"], [])
                if p["isActive"]
            ],
        }

    categories = db_rows(backend, "categories")
    items = data(api, "/categories", {**params, "page[limit]": ALL})
    assert items == [expected(c) for c in categories]
    busiest = max(categories, key=lambda c: len(products.get(c["idCategory"], [])))
    assert data(api, f"/categories/{busiest['idCategory']}", params) == expected(busiest)


def test_two_include_filter_shapes_in_sequence(api: httpx.Client, backend: Backend) -> None:
    """Children statements are cached by shape too: another include filter must not reuse the first's SQL."""
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    for condition, keep in (
        ('{"gt":400}', lambda s: s["quantity"] > 400),
        ('{"lt":50}', lambda s: s["quantity"] < 50),
        ('{"nin":[0,1,2]}', lambda s: s["quantity"] not in (0, 1, 2)),
        (None, lambda s: True),
    ):
        params = {"include": "productStocks", "filter[products.idProduct]": '{"lte":40}'}
        if condition is not None:
            params["filter[include.productStocks.quantity]"] = condition
        for item in data(api, "/products", params):
            assert item["productStocks"] == [s for s in stocks.get(item["idProduct"], []) if keep(s)]


@pytest.mark.parametrize(
    ("params", "code", "mention"),
    [
        pytest.param({"filter[include.productStocks.quantity]": "1"}, "2033", "productStocks", id="not-included"),
        pytest.param(
            {"include": "productStocks", "filter[include.productTaxRate.rate]": "1"},
            "2033",
            "productTaxRate",
            id="another-relation",
        ),
        pytest.param(
            {"include": "productStocks", "filter[include.productStocks.nope]": "1"}, "1315", "`stocks`", id="field"
        ),
        pytest.param(
            {"include": "productStocks", "filter[include.productStocks.quantity]": '{"gt":"x"}'},
            "2001",
            "`quantity`",
            id="value",
        ),
        pytest.param({"include": "productStocks", "filter[include..quantity]": "1"}, "011", "", id="empty-part"),
    ],
)
def test_include_filter_errors(api: httpx.Client, params: dict[str, str], code: str, mention: str) -> None:
    assert_error(get(api, "/products", params), 400, code, mentions=[mention])


def test_include_filter_spelled_with_one_dot_is_spryker_own_field(api: httpx.Client) -> None:
    assert listed(api, "products", {"filter[include.sku]": "SKU-000007"}, "sku") == ["SKU-000007"]


# --- a relation of an entity to itself, and DELETE ---------------------------------------------------------------

META = sa.MetaData()
NODE = sa.Table(
    "fr_node",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parent", sa.Integer, nullable=True),
    sa.Column("label", sa.String(20), nullable=False),
)
ALIAS = "fr-nodes"
CONFIG = [
    {
        "tableName": "fr_node",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [config_field("id", "integer"), config_field("parent", "integer"), config_field("label")],
        },
        "childRelations": [
            {
                "name": "children",
                "isEditable": False,
                "childDynamicEntityConfiguration": {"tableAlias": ALIAS},
                "relationFieldMappings": [{"childFieldName": "parent", "parentFieldName": "id"}],
            }
        ],
    }
]
# 1 ← 2 ← 4, 1 ← 3, 5 ← 6: labels say what a node is.
NODES = [
    {"id": 1, "parent": None, "label": "root"},
    {"id": 2, "parent": 1, "label": "branch"},
    {"id": 3, "parent": 1, "label": "leaf"},
    {"id": 4, "parent": 2, "label": "leaf"},
    {"id": 5, "parent": None, "label": "root"},
    {"id": 6, "parent": 5, "label": "branch"},
]


@pytest.fixture(scope="module")
def nodes(backend: Backend) -> Iterator[Backend]:
    with serving(backend, META, CONFIG):
        yield backend


def _refill(backend: Backend) -> None:
    backend.sql(sa.delete(NODE))
    backend.sql(sa.insert(NODE).values(NODES))


def node_ids(backend: Backend, params: dict[str, str]) -> list[int]:
    return listed(backend.client, ALIAS, params, "id")


def test_relation_of_an_entity_to_itself(nodes: Backend) -> None:
    _refill(nodes)
    assert node_ids(nodes, {"filter[children.label]": "leaf"}) == [1, 2]
    assert node_ids(nodes, {"filter[children.label]": "leaf", "filter[fr-nodes.label]": "root"}) == [1]
    assert node_ids(nodes, {"filter[children.children.label]": "leaf"}) == [1]
    assert node_ids(nodes, {"filter[not]": json.dumps({"children.id": {"isNull": False}})}) == [3, 4, 6]
    params = {"include": "children", "filter[include.children.label]": "leaf", "filter[children.label]": "leaf"}
    items = data(nodes.client, f"/{ALIAS}", params)
    assert [(i["id"], ids(i["children"], "id")) for i in items] == [(1, [3]), (2, [4])]


def test_collection_delete_through_a_relation_deletes_what_the_same_filter_lists(nodes: Backend) -> None:
    _refill(nodes)
    params = {"filter[or]": json.dumps([{"children.label": "branch"}, {"fr-nodes.id": 4}])}
    assert node_ids(nodes, params) == [1, 4, 5]
    response = nodes.client.delete(f"/dynamic-entity/{ALIAS}", params=params)
    assert response.status_code == 204, response.text
    assert [row[0] for row in nodes.sql(sa.select(NODE.c.id).order_by(NODE.c.id))] == [2, 3, 6]


def test_collection_delete_refuses_include_filters(nodes: Backend) -> None:
    _refill(nodes)
    response = nodes.client.delete(
        f"/dynamic-entity/{ALIAS}", params={"filter[fr-nodes.id]": "3", "filter[include.children.label]": "leaf"}
    )
    assert_error(response, 400, "2017", mentions=["filter[include...]"])
    assert len(nodes.sql(sa.select(NODE.c.id))) == len(NODES)


# --- OpenAPI ---------------------------------------------------------------------------------------------------


def _parameter_names(document: dict[str, Any], method: str = "get") -> set[str]:
    return {p["name"] for p in document["paths"]["/dynamic-entity/products"][method]["parameters"]}


def test_openapi_lists_groups_and_the_relation_filters_the_caller_may_use(api: httpx.Client, backend: Backend) -> None:
    names = _parameter_names(api.get("/dynamic-entity/openapi.json").json())
    assert {"filter[or]", "filter[and]", "filter[not]", "filter[productStocks.quantity]"} <= names
    assert "filter[productTaxRate.rate]" in names

    async def products_only(engine: Any) -> tuple[str, str]:
        return await add_client(engine, "openapi relation reader", ["products:read"])

    client_id, secret = backend.with_engine(products_only)
    headers = {"Authorization": f"Bearer {fetch_token(backend.base_url, client_id, secret)}"}
    document = httpx.get(f"{backend.base_url}/dynamic-entity/openapi.json", headers=headers, timeout=30).json()
    narrow = _parameter_names(document)
    assert "filter[or]" in narrow and not any(name.startswith("filter[productStocks.") for name in narrow)
