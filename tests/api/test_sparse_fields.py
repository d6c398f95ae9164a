"""Sparse fields (``fields[{alias}]``, ``fields[{relation}]``; docs/fields.md) on every backend.

Expectations come from the database (``test_read.db_rows``) narrowed to the fields asked for, so each test checks
what the server answers against the rows themselves. The demo shop is read-only here; the tests that need a
self-relation (an include path that repeats a relation name) or a write (If-Match with a sparse answer's ETag)
serve a table of their own, ``sf_node``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest
import sqlalchemy as sa

from dxapi.plan.build import build_read_plan
from dxapi.registry.snapshot import load_snapshot
from dxapi.request.params import parse_read_request
from dxapi.sql.build import build_children, build_read, read_shape
from tests.api.test_read import (
    ALL,
    PRODUCT,
    assert_error,
    data,
    db_rows,
    get,
    grouped,
    ok,
    visible_names,
)
from tests.conftest import Backend, config_field, serving

PRODUCTS = "/products"


def only(item: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``item`` with the keys ``names`` in its own (configured) order."""
    return {key: value for key, value in item.items() if key in names}


def keys(items: list[dict[str, Any]]) -> set[tuple[str, ...]]:
    return {tuple(item) for item in items}


# --- the root --------------------------------------------------------------------------------------------------


def test_root_fields_answer_the_identifier_and_those_fields_in_configured_order(
    api: httpx.Client, backend: Backend
) -> None:
    items = data(api, PRODUCTS, {"fields[products]": "price, sku", "page[limit]": ALL})
    assert keys(items) == {("idProduct", "sku", "price")}  # configured order, not the order listed
    assert items == [only(row, ["idProduct", "sku", "price"]) for row in db_rows(backend, "products")]


def test_naming_the_identifier_changes_nothing(api: httpx.Client) -> None:
    with_it = data(api, PRODUCTS, {"fields[products]": "idProduct,name"})
    without = data(api, PRODUCTS, {"fields[products]": "name"})
    assert with_it == without and keys(with_it) == {("idProduct", "name")}


def test_identifier_alone(api: httpx.Client, backend: Backend) -> None:
    items = data(api, PRODUCTS, {"fields[products]": "idProduct", "page[limit]": "7"})
    assert items == [{"idProduct": row["idProduct"]} for row in db_rows(backend, "products")[:7]]


def test_fields_combine_with_filter_sort_and_page_on_fields_not_shown(api: httpx.Client, backend: Backend) -> None:
    params = {
        "fields[products]": "name",
        "filter[products.price]": '{"gt":"500"}',
        "sort": "-price",
        "page[offset]": "3",
        "page[limit]": "20",
    }
    expected = db_rows(
        backend, "products", PRODUCT.c.price > 500, order_by=[PRODUCT.c.price.desc(), PRODUCT.c.id_product]
    )
    assert data(api, PRODUCTS, params) == [only(row, ["idProduct", "name"]) for row in expected[3:23]]


def test_answers_without_the_parameter_are_byte_identical_to_the_full_rows(api: httpx.Client, backend: Backend) -> None:
    response = get(api, PRODUCTS, {"page[limit]": "40", "include": "productStocks"})
    ok(response)
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    expected = [{**p, "productStocks": stocks.get(p["idProduct"], [])} for p in db_rows(backend, "products")[:40]]
    assert response.content == orjson.dumps({"data": expected})
    assert "preference-applied" not in response.headers


def test_different_field_lists_in_turn_each_get_their_own_statement(api: httpx.Client) -> None:
    """The statement cache is keyed by the selection: a list served from another list's statement would answer
    that one's columns."""
    for _ in range(2):
        for names in ("sku", "name", "sku,name", "price"):
            items = data(api, PRODUCTS, {"fields[products]": names, "page[limit]": "3"})
            assert keys(items) == {
                tuple(["idProduct", *[n for n in visible_names("products") if n in names.split(",")]])
            }
        assert keys(data(api, PRODUCTS, {"page[limit]": "3"})) == {tuple(visible_names("products"))}


# --- included relations ----------------------------------------------------------------------------------------


def test_include_fields_keep_the_key_they_attach_by_out_of_the_answer(api: httpx.Client, backend: Backend) -> None:
    params = {
        "fields[products]": "sku",
        "fields[productStocks]": "quantity",
        "fields[productTaxRate]": "rate",
        "include": "productStocks,productTaxRate",
        "page[limit]": ALL,
    }
    items = data(api, PRODUCTS, params)
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    rates = {r["idTaxRate"]: r for r in db_rows(backend, "tax-rates")}
    expected = [
        {
            "idProduct": p["idProduct"],
            "sku": p["sku"],
            "productStocks": [only(s, ["idStock", "quantity"]) for s in stocks.get(p["idProduct"], [])],
            # fkTaxRate, the parent key of this relation, is selected to attach the rate but not answered
            "productTaxRate": [only(rates[p["fkTaxRate"]], ["idTaxRate", "rate"])] if p["fkTaxRate"] else [],
        }
        for p in db_rows(backend, "products")
    ]
    assert items == expected
    assert any(item["productTaxRate"] for item in items) and any(item["productStocks"] for item in items)


def test_fields_of_an_include_only_leave_the_root_whole(api: httpx.Client, backend: Backend) -> None:
    items = data(api, PRODUCTS, {"fields[productStocks]": "warehouse", "include": "productStocks", "page[limit]": "30"})
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    expected = [
        {**p, "productStocks": [only(s, ["idStock", "warehouse"]) for s in stocks.get(p["idProduct"], [])]}
        for p in db_rows(backend, "products")[:30]
    ]
    assert items == expected


NESTED = "categoryProducts.productStocks,categoryProducts.productTaxRate"


@pytest.mark.parametrize("stock_target", ["productStocks", "categoryProducts.productStocks"], ids=["bare", "path"])
def test_nested_includes_by_bare_name_or_path(api: httpx.Client, backend: Backend, stock_target: str) -> None:
    params = {
        "fields[categories]": "name",
        "fields[categoryProducts]": "sku",
        f"fields[{stock_target}]": "quantity",
        "include": NESTED,
        "page[limit]": ALL,
    }
    items = data(api, "/categories", params)
    products = grouped(db_rows(backend, "products"), "fkCategory")
    stocks = grouped(db_rows(backend, "stocks"), "fkProduct")
    rates = {r["idTaxRate"]: r for r in db_rows(backend, "tax-rates")}
    expected = [
        {
            "idCategory": c["idCategory"],
            "name": c["name"],
            "categoryProducts": [
                {
                    "idProduct": p["idProduct"],
                    "sku": p["sku"],
                    "productStocks": [only(s, ["idStock", "quantity"]) for s in stocks.get(p["idProduct"], [])],
                    "productTaxRate": [rates[p["fkTaxRate"]]] if p["fkTaxRate"] is not None else [],
                }
                for p in products.get(c["idCategory"], [])
            ],
        }
        for c in db_rows(backend, "categories")
    ]
    assert items == expected


def test_include_statements_select_only_the_fields_shown_and_the_keys(backend: Backend) -> None:
    pairs = [
        ("fields[categories]", "name"),
        ("fields[categoryProducts]", "sku"),
        ("fields[productStocks]", "quantity"),
        ("include", "categoryProducts.productStocks"),
    ]
    plan = _plan(backend, "categories", pairs)
    assert _columns(build_read(plan)) == ["id_category", "name"]
    (products,) = plan.includes
    # fk_category attaches a product to its category; id_product is also the key its stocks attach by
    assert _columns(build_children(products, [1])) == ["id_product", "sku", "fk_category"]
    (stocks,) = products.includes
    assert _columns(build_children(stocks, [1])) == ["id_stock", "fk_product", "quantity"]


# --- keyset paging ---------------------------------------------------------------------------------------------


def test_a_cursor_list_pages_by_sort_fields_it_does_not_show(api: httpx.Client, backend: Backend) -> None:
    params = {"fields[products]": "sku", "sort": "-price,name", "page[limit]": "64", "page[cursor]": ""}
    seen: list[dict[str, Any]] = []
    response = get(api, PRODUCTS, params)
    pages = 0
    while True:
        body = ok(response)
        seen += body["data"]
        pages += 1
        if "next" not in body["links"]:
            break
        assert _query(body["links"]["next"])["fields[products]"] == "sku"
        response = get(api, body["links"]["next"], prefix="")
    order = [PRODUCT.c.price.desc(), PRODUCT.c.name, PRODUCT.c.id_product]
    assert pages > 2
    assert seen == [only(row, ["idProduct", "sku"]) for row in db_rows(backend, "products", order_by=order)]


def test_a_cursor_statement_selects_the_sort_fields_and_the_offset_one_does_not(backend: Backend) -> None:
    fields = [("fields[products]", "sku"), ("sort", "-price")]
    keyset = _plan(backend, "products", [*fields, ("page[cursor]", "")])
    offset = _plan(backend, "products", fields)
    assert _columns(build_read(keyset)) == ["id_product", "sku", "price"]
    assert keyset.hidden == ("price",)
    assert _columns(build_read(offset)) == ["id_product", "sku"]
    whole = _plan(backend, "products", [("sort", "-price")])
    assert len({read_shape(keyset), read_shape(offset), read_shape(whole)}) == 3


# --- errors and bounds -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        pytest.param(
            {"fields[products]": "sku,nope"},
            "2040",
            "`fields[products]`: field `nope` for table alias `products` not found.",
            id="unknown-field",
        ),
        pytest.param(
            {"fields[products]": "id_product"},
            "2040",
            "`fields[products]`: field `id_product` for table alias `products` not found.",
            id="column-name-not-visible-name",
        ),
        pytest.param(
            {"fields[productStocks]": "quantity,sku", "include": "productStocks"},
            "2040",
            "`fields[productStocks]`: field `sku` for table alias `stocks` not found.",
            id="field-of-the-parent-in-a-relation",
        ),
        pytest.param(
            {"fields[stocks]": "quantity"},
            "2041",
            "`fields[stocks]` names neither the table alias `products` nor a relation in `include`.",
            id="another-alias",
        ),
        pytest.param(
            {"fields[productStocks]": "quantity"},
            "2041",
            "`fields[productStocks]` names neither the table alias `products` nor a relation in `include`.",
            id="relation-not-included",
        ),
        pytest.param(
            {"fields[productStocks.nothing]": "quantity", "include": "productStocks"},
            "2041",
            "`fields[productStocks.nothing]` names neither the table alias `products` nor a relation in `include`.",
            id="path-not-included",
        ),
        pytest.param(
            {"fields[products]": ""},
            "2042",
            "`fields[products]`: the list names no field (the identifier is always answered; name it alone)",
            id="empty",
        ),
        pytest.param(
            {"fields[products]": " , ,"},
            "2042",
            "`fields[products]`: the list names no field (the identifier is always answered; name it alone)",
            id="only-commas",
        ),
        pytest.param(
            {"fields[products]": "sku,name,sku"},
            "2042",
            "`fields[products]`: the field `sku` is named twice",
            id="duplicate",
        ),
        pytest.param(
            {"fields[products]": ",".join(f"f{i}" for i in range(13))},
            "2042",
            "`fields[products]`: 13 fields named; `products` has 12",
            id="longer-than-the-entity",
        ),
        pytest.param(
            {"fields[products]": ",".join(f"f{i}" for i in range(5000))},
            "2042",
            "`fields[products]`: 5000 fields named; `products` has 12",
            id="very-long",
        ),
        pytest.param(
            {"fields[]": "sku"},
            "2007",
            "Unknown query parameter `fields[]`. Allowed: filter[...], page[...], sort, include, fields[...].",
            id="no-target",
        ),
        pytest.param(
            {"fields": "sku"},
            "2007",
            "Unknown query parameter `fields`. Allowed: filter[...], page[...], sort, include, fields[...].",
            id="no-brackets",
        ),
    ],
)
def test_bad_fields_are_refused(api: httpx.Client, params: dict[str, str], code: str, message: str) -> None:
    assert_error(get(api, PRODUCTS, params), 400, code, message=message)


def test_twelve_distinct_fields_are_all_of_them(api: httpx.Client) -> None:
    names = visible_names("products")
    assert len(names) == 12
    items = data(api, PRODUCTS, {"fields[products]": ",".join(reversed(names)), "page[limit]": "5"})
    assert items == data(api, PRODUCTS, {"page[limit]": "5"})


def test_the_same_parameter_twice_is_2008(api: httpx.Client) -> None:
    response = get(api, PRODUCTS, [("fields[products]", "sku"), ("fields[products]", "name")])
    assert_error(response, 400, "2008", mentions=["fields[products]"])


def test_one_relation_chosen_by_bare_name_and_by_path_is_refused(api: httpx.Client) -> None:
    params = {
        "fields[productStocks]": "quantity",
        "fields[categoryProducts.productStocks]": "warehouse",
        "include": NESTED,
    }
    assert_error(
        get(api, "/categories", params),
        400,
        "2042",
        message="`fields[categoryProducts.productStocks]`: the same fields are already chosen by "
        "`fields[productStocks]`",
    )


def test_fields_on_a_collection_delete_is_2017(api: httpx.Client) -> None:
    response = api.delete("/dynamic-entity/stocks", params={"filter[stocks.idStock]": "-1", "fields[stocks]": "x"})
    assert_error(response, 400, "2017", message="Query parameter `fields[...]` is not allowed on DELETE.")


# --- a self-relation and a single row --------------------------------------------------------------------------

NODES = "sf-nodes"


def _node_metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "sf_node",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("parent", sa.Integer, nullable=True),
        sa.Column("label", sa.String(40), nullable=False),
        sa.Column("secret", sa.String(40), nullable=True),
    )
    return metadata


NODE_CONFIG: list[dict[str, Any]] = [
    {
        "tableName": "sf_node",
        "tableAlias": NODES,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [
                config_field("id", "integer", isCreatable=True),
                config_field("parent", "integer"),
                config_field("label"),
                config_field("secret", isEnabled=False),
            ],
        },
        "childRelations": [
            {
                "name": "children",
                "isEditable": False,
                "childDynamicEntityConfiguration": {"tableAlias": NODES},
                "relationFieldMappings": [{"childFieldName": "parent", "parentFieldName": "id"}],
            }
        ],
    }
]
# 1 → 2, 3; 2 → 4
NODE_ROWS = [
    {"id": 1, "parent": None, "label": "root", "secret": "s1"},
    {"id": 2, "parent": 1, "label": "left", "secret": "s2"},
    {"id": 3, "parent": 1, "label": "right", "secret": "s3"},
    {"id": 4, "parent": 2, "label": "leaf", "secret": "s4"},
]


@pytest.fixture(scope="module")
def nodes(backend: Backend) -> Iterator[Backend]:
    with serving(backend, _node_metadata(), NODE_CONFIG):
        for row in NODE_ROWS:
            backend.sql("INSERT INTO sf_node (id, parent, label, secret) VALUES (:id, :parent, :label, :secret)", **row)
        yield backend


def node_get(backend: Backend, path: str, params: Any = None, headers: Any = None) -> httpx.Response:
    response = backend.client.get(f"/dynamic-entity/{NODES}{path}", params=params, headers=headers)
    assert response.status_code < 500, response.text
    return response


def test_a_relation_included_at_two_places_is_ambiguous_by_bare_name(nodes: Backend) -> None:
    params = {"include": "children.children", "filter[sf-nodes.id]": "1", "fields[children]": "label"}
    assert_error(
        node_get(nodes, "", params),
        400,
        "2043",
        message="`fields[children]` fits the included relations `children`, `children.children`; name one by its "
        "path in `include`.",
    )


def test_a_self_relation_by_path(nodes: Backend) -> None:
    params = {
        "include": "children.children",
        "filter[sf-nodes.id]": "1",
        "fields[sf-nodes]": "label",
        "fields[children.children]": "parent",
    }
    body = ok(node_get(nodes, "", params))
    assert body == {
        "data": [
            {
                "id": 1,
                "label": "root",
                "children": [
                    {"id": 2, "parent": 1, "label": "left", "children": [{"id": 4, "parent": 2}]},
                    {"id": 3, "parent": 1, "label": "right", "children": []},
                ],
            }
        ]
    }


def test_the_root_alias_names_the_root_even_when_a_relation_shares_it(nodes: Backend) -> None:
    # `children` is no alias, so the rule is seen on the alias itself: fields[sf-nodes] never means a relation
    params = {"include": "children", "filter[sf-nodes.id]": "2", "fields[sf-nodes]": "parent"}
    body = ok(node_get(nodes, "", params))
    assert body["data"] == [{"id": 2, "parent": 1, "children": [{"id": 4, "parent": 2, "label": "leaf"}]}]


def test_a_disabled_field_is_2040(nodes: Backend) -> None:
    assert_error(
        node_get(nodes, "", {"fields[sf-nodes]": "label,secret"}),
        400,
        "2040",
        message="`fields[sf-nodes]`: field `secret` for table alias `sf-nodes` not found.",
    )


def test_a_single_row_answers_its_fields_and_the_whole_rows_etag(nodes: Backend) -> None:
    whole = node_get(nodes, "/3")
    sparse = node_get(nodes, "/3", {"fields[sf-nodes]": "label"})
    assert ok(sparse) == {"data": {"id": 3, "label": "right"}}
    assert sparse.headers["etag"] == whole.headers["etag"]
    # the tag of the sparse answer serves both kinds of conditional request
    again = node_get(nodes, "/3", {"fields[sf-nodes]": "label"}, {"If-None-Match": sparse.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == whole.headers["etag"]
    patched = nodes.client.patch(
        f"/dynamic-entity/{NODES}/3",
        json={"data": {"label": "right!"}},
        headers={"If-Match": sparse.headers["etag"]},
    )
    assert patched.status_code == 200, patched.text
    stale = nodes.client.patch(
        f"/dynamic-entity/{NODES}/3", json={"data": {"label": "again"}}, headers={"If-Match": sparse.headers["etag"]}
    )
    assert_error(stale, 412, "6111")
    assert ok(node_get(nodes, "/3", {"fields[sf-nodes]": "label"}))["data"] == {"id": 3, "label": "right!"}
    nodes.client.patch(f"/dynamic-entity/{NODES}/3", json={"data": {"label": "right"}})


def test_a_single_row_with_include_fields(nodes: Backend) -> None:
    params = {"include": "children", "fields[sf-nodes]": "parent", "fields[children]": "label"}
    assert ok(node_get(nodes, "/2", params)) == {
        "data": {"id": 2, "parent": 1, "children": [{"id": 4, "label": "leaf"}]}
    }
    assert_error(node_get(nodes, "/2", {"fields[sf-nodes]": "nope"}), 400, "2040")
    assert_error(node_get(nodes, "/404", {"fields[sf-nodes]": "label"}), 404, "1303")


# --- helpers ---------------------------------------------------------------------------------------------------


def _plan(backend: Backend, alias: str, pairs: list[tuple[str, str]]) -> Any:
    """The plan the server builds for ``pairs`` on ``alias``, from the live configuration."""

    async def build(engine: Any) -> Any:
        snapshot = await load_snapshot(engine)
        read = parse_read_request(pairs, backend.settings.max_filter_values)
        return build_read_plan(snapshot, snapshot.entities[alias], read, backend.settings, allows=lambda a, b: True)

    return backend.with_engine(build)


def _columns(statement: sa.Select[Any]) -> list[str]:
    return [column.name for column in statement.selected_columns]


def _query(link: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(link).query, keep_blank_values=True))
