"""Boolean filter groups and `nin` (issue 14): `filter[or]`, `filter[and]`, `filter[not]`, nestable, bounded.

Runs on every backend of ``DXAPI_TEST_BACKENDS`` against the read-only demo shop. Fixed cases compare dxapi with
the rows the same predicate selects in Python over every product row the database holds (so NULLs follow the
documented two-valued rule: a comparison with NULL does not match, `ne`/`nin` do, `not` is the exact
complement); a randomized comparison does the same for random nested groups (fixed seeds, bounded in time).
Collection DELETE with groups runs on a table of its own (``fg_row``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dxapi.request.params import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH
from tests.api.test_read import ALL, assert_error, data, db_rows, get
from tests.conftest import Backend, config_field, serving

Row = dict[str, Any]
Leaf = tuple[str, str, Any]  # (field, operator, operand) of one product condition


@pytest.fixture(scope="module")
def products(backend: Backend) -> list[Row]:
    rows = db_rows(backend, "products")
    assert len(rows) > 100
    return rows


@pytest.fixture(scope="module")
def stocks(backend: Backend) -> dict[int, list[Row]]:
    out: dict[int, list[Row]] = {}
    for row in db_rows(backend, "stocks"):
        out.setdefault(row["fkProduct"], []).append(row)
    return out


# --- a Python evaluator of the grammar, over rendered rows ------------------------------------------------------


def _number(field: str, value: Any) -> Any:
    return Decimal(str(value)) if field == "price" else value


def leaf_matches(row: Row, field: str, operator: str, operand: Any, stocks: dict[int, list[Row]]) -> bool:
    if "." in field:  # `productStocks.quantity`: at least one stock row matching
        related = field.split(".")[1]
        return any(leaf_matches(s, related, operator, operand, stocks) for s in stocks.get(row["idProduct"], []))
    value = row[field]
    if isinstance(operand, str) and isinstance(value, (bool, int)):  # a plain value is text
        operand = operand == "true" if isinstance(value, bool) else int(operand)
    if operator == "isNull":
        return (value is None) is operand
    if operator in ("ne", "nin"):
        values = operand if operator == "nin" else [operand]
        return value is None or all(_number(field, value) != _number(field, v) for v in values)
    if value is None:
        return False
    value = _number(field, value)
    if operator == "like":
        prefix = operand.rstrip("%")
        return bool(value.startswith(prefix))
    if operator == "in":
        return any(value == _number(field, v) for v in operand)
    other = _number(field, operand)
    return {
        "eq": value == other,
        "gt": value > other,
        "gte": value >= other,
        "lt": value < other,
        "lte": value <= other,
    }[operator]


def matches(row: Row, element: dict[str, Any], stocks: dict[int, list[Row]]) -> bool:
    """One group element (its keys hold together), as docs/filters.md defines it."""
    for key, value in element.items():
        if key == "or":
            ok = any(matches(row, e, stocks) for e in value)
        elif key == "and":
            ok = all(matches(row, e, stocks) for e in value)
        elif key == "not":
            ok = not matches(row, value, stocks)
        else:
            field = key if key.startswith("productStocks.") else key.split(".", 1)[1]
            if isinstance(value, dict):
                ok = all(leaf_matches(row, field, op, operand, stocks) for op, operand in value.items())
            else:
                ok = leaf_matches(row, field, "eq", value, stocks)
        if not ok:
            return False
    return True


def expected_ids(products: list[Row], stocks: dict[int, list[Row]], element: dict[str, Any]) -> list[int]:
    return [row["idProduct"] for row in products if matches(row, element, stocks)]


def listed(api: httpx.Client, params: dict[str, str]) -> list[int]:
    return [item["idProduct"] for item in data(api, "/products", {**params, "page[limit]": ALL})]


def as_params(element: dict[str, Any]) -> dict[str, str]:
    """The element's keys as top-level parameters (groups as `filter[or]`…, the rest as `filter[alias.field]`)."""
    out = {}
    for key, value in element.items():
        text = value if isinstance(value, str) else json.dumps(value)
        out[f"filter[{key}]"] = text
    return out


# --- fixed cases ------------------------------------------------------------------------------------------------

P = "products"
CASES: list[Any] = [
    pytest.param({"or": [{f"{P}.price": {"lt": "20"}}, {f"{P}.sku": {"like": "SKU-00001%"}}]}, id="or"),
    pytest.param({"and": [{f"{P}.price": {"lt": "500"}}, {f"{P}.isActive": True}]}, id="and"),
    pytest.param({"not": {f"{P}.fkTaxRate": {"gt": 2}}}, id="not-keeps-null-rows"),
    pytest.param({"not": {f"{P}.availableFrom": {"lt": "2026-01-01"}}}, id="not-date-keeps-nulls"),
    pytest.param({"not": {f"{P}.fkTaxRate": {"isNull": True}}}, id="not-isnull"),
    pytest.param({"not": {f"{P}.price": {"lt": "300"}, f"{P}.isActive": True}}, id="not-of-two-keys"),
    pytest.param(
        {"or": [{f"{P}.fkCategory": 3, f"{P}.isActive": False}, {f"{P}.idProduct": {"in": [1, 2, 3]}}]},
        id="or-of-an-and-element",
    ),
    pytest.param(
        {"or": [{"and": [{f"{P}.price": {"gte": "100"}}, {"not": {f"{P}.fkTaxRate": {"in": [1, 2]}}}]}]},
        id="nested-three",
    ),
    pytest.param({f"{P}.fkTaxRate": {"nin": [1, 2]}}, id="nin-keeps-nulls"),
    pytest.param({f"{P}.idProduct": {"nin": []}}, id="nin-empty-is-every-row"),
    pytest.param({f"{P}.idProduct": {"nin": [1, 2, 3], "lte": 10}}, id="nin-and-lte"),
    pytest.param({"not": {f"{P}.fkTaxRate": {"nin": [1]}}}, id="not-nin-is-in"),
    pytest.param({"or": [{"x.idProduct": 7}, {"anything.idProduct": "8"}]}, id="prefix-ignored-and-plain-values"),
    pytest.param(
        {f"{P}.isActive": "true", "or": [{f"{P}.price": {"lt": "50"}}, {f"{P}.price": {"gt": "1500"}}]},
        id="top-level-and-group-hold-together",
    ),
]


@pytest.mark.parametrize("element", CASES)
def test_group_selects_what_its_definition_says(
    api: httpx.Client, products: list[Row], stocks: dict[int, list[Row]], element: dict[str, Any]
) -> None:
    expected = expected_ids(products, stocks, element)
    assert expected, "the case must select something to be meaningful"
    assert listed(api, as_params(element)) == expected


def test_not_and_nin_are_the_complements_of_their_positive_forms(api: httpx.Client, products: list[Row]) -> None:
    every = [row["idProduct"] for row in products]
    assert any(row["fkTaxRate"] is None for row in products)
    for positive in ({"gt": 2}, {"in": [1, 3]}, {"lte": 1}, {"eq": 2}):
        inside = set(listed(api, {f"filter[{P}.fkTaxRate]": json.dumps(positive)}))
        outside = set(listed(api, {"filter[not]": json.dumps({f"{P}.fkTaxRate": positive})}))
        assert inside and outside and not inside & outside
        assert sorted(inside | outside) == every
    inside = set(listed(api, {f"filter[{P}.fkTaxRate]": '{"in":[1,3]}'}))
    assert sorted(inside | set(listed(api, {f"filter[{P}.fkTaxRate]": '{"nin":[1,3]}'}))) == every


def test_two_group_shapes_in_sequence_each_answer_their_own_rows(
    api: httpx.Client, products: list[Row], stocks: dict[int, list[Row]]
) -> None:
    """The same leaves under `or` and under `and` (and the same values in other nestings) are different
    statements: a cache keyed too coarsely would answer the second with the first one's SQL."""
    a, b = {f"{P}.price": {"lt": "400"}}, {f"{P}.isActive": True}
    shapes = [
        {"or": [a, b]},
        {"and": [a, b]},
        {"or": [{"not": a}, b]},
        {"or": [a, {"not": b}]},
        {"not": {"or": [a, b]}},
        {"or": [a, b]},
    ]
    answers = []
    for element in shapes:
        expected = expected_ids(products, stocks, element)
        answers.append(expected)
        assert listed(api, as_params(element)) == expected, element
    assert len({tuple(found) for found in answers}) == 5


# --- errors -----------------------------------------------------------------------------------------------------

BAD_GROUPS = [
    pytest.param("or", "[{", "2030", "not valid JSON", id="not-json"),
    pytest.param("or", "[]", "2030", "empty", id="empty-or"),
    pytest.param("and", "[]", "2030", "empty", id="empty-and"),
    pytest.param("or", '{"products.price":"1"}', "2030", "array", id="or-not-an-array"),
    pytest.param("and", '"x"', "2030", "array", id="and-a-string"),
    pytest.param("or", "[1]", "2030", "object", id="element-not-an-object"),
    pytest.param("or", "[{}]", "2030", "empty", id="empty-element"),
    pytest.param("not", "[]", "2030", "object", id="not-an-array"),
    pytest.param("not", "{}", "2030", "empty", id="not-empty"),
    pytest.param("or", '[{"price":"1"}]', "2030", "`price`", id="key-without-dot"),
    pytest.param("or", '[{"xor":[{"products.price":"1"}]}]', "2030", "`xor`", id="unknown-group"),
    pytest.param("or", '[{"or":{"products.price":"1"}}]', "2030", "array", id="nested-or-not-an-array"),
    pytest.param("or", '[{"products.price":"1","products.price":"2"}]', "2030", "price", id="key-twice"),
    pytest.param(
        "or", '[{"include.productStocks.quantity":{"gt":0}}]', "2030", "parameter of its own", id="include-in-a-group"
    ),
    pytest.param("or", '[{"products.price":{"between":[1,2]}}]', "2002", "`price`", id="unknown-operator"),
    pytest.param("or", '[{"products.price":{"lt":"x"}}]', "2001", "`price`", id="bad-value"),
    pytest.param("or", '[{"products.price":{}}]', "2001", "`price`", id="empty-operator-object"),
    pytest.param("or", '[{"products.price":null}]', "2001", "isNull", id="null-value"),
    pytest.param("or", '[{"products.sku":["a"]}]', "2001", "`sku`", id="list-value"),
    pytest.param("or", '[{"products.nope":"1"}]', "1315", "`nope`", id="unknown-field"),
    pytest.param("not", '{"products.idProduct":{"nin":"1"}}', "2001", "list", id="nin-not-a-list"),
    pytest.param("or", '[{"products.isActive":{"nin":[true,"x"]}}]', "2001", "`isActive`", id="nin-bad-member"),
]


@pytest.mark.parametrize(("group", "value", "code", "mention"), BAD_GROUPS)
def test_malformed_group_is_a_clear_400(api: httpx.Client, group: str, value: str, code: str, mention: str) -> None:
    assert_error(get(api, "/products", {f"filter[{group}]": value}), 400, code, mentions=[mention])


def _nested(depth: int) -> dict[str, Any]:
    """``depth`` groups, the outermost `or`, alternating `not`/`and` inside, one leaf at the bottom."""
    element: dict[str, Any] = {f"{P}.idProduct": {"lte": 5}}
    for level in range(depth - 1):
        element = {"and": [element, {f"{P}.idProduct": {"lte": 9}}]} if level % 2 else {"not": element}
    return {"or": [element]}


def test_group_depth_is_bounded(api: httpx.Client, products: list[Row], stocks: dict[int, list[Row]]) -> None:
    at_limit = _nested(MAX_FILTER_DEPTH)
    expected = expected_ids(products, stocks, at_limit)
    assert 6 not in expected and 1 in expected  # not(and(not(≤ 5), ≤ 9)): all but 6 to 9
    assert listed(api, {"filter[or]": json.dumps(at_limit["or"])}) == expected
    too_deep = _nested(MAX_FILTER_DEPTH + 1)
    assert_error(
        get(api, "/products", {"filter[or]": json.dumps(too_deep["or"])}),
        400,
        "2031",
        mentions=["filter[or][0]", str(MAX_FILTER_DEPTH)],
    )


def test_conditions_over_the_whole_request_are_bounded(api: httpx.Client, backend: Backend) -> None:
    maximum = min(backend.settings.max_filter_values, MAX_FILTER_CONDITIONS)
    # Date-times: on SQLite each is a deep normalising expression, the heaviest condition there is.
    top = {f"filter[{P}.idProduct]": '{"lte":50}', f"filter[{P}.updatedAt]": '{"ne":"2000-01-01T00:00:00"}'}
    leaves: list[dict[str, Any]] = [{f"{P}.updatedAt": {"ne": f"2001-01-01T00:00:{n % 60:02d}"}} for n in range(90)]
    leaves += [{f"{P}.idProduct": {"ne": n}} for n in range(1, maximum - len(top) - len(leaves) + 1)]
    assert listed(api, {**top, "filter[and]": json.dumps(leaves)}) == []  # every id up to 50 excluded
    leaves.append({f"{P}.idProduct": {"ne": 0}})
    assert_error(
        get(api, "/products", {**top, "filter[and]": json.dumps(leaves)}),
        400,
        "2032",
        mentions=[str(maximum + 1), str(maximum)],
    )


def test_nin_list_is_bounded_like_in(api: httpx.Client, backend: Backend) -> None:
    maximum = backend.settings.max_filter_values
    over = json.dumps({"nin": list(range(maximum + 1))})
    assert_error(get(api, "/products", {f"filter[{P}.idProduct]": over}), 400, "2009", mentions=["`idProduct`"])


# --- randomized: nested groups against the Python definition ----------------------------------------------------

SEEDS = list(range(200))
TIME_BUDGET = 25.0  # seconds for the whole randomized comparison on one backend


def _random_leaf(rng: random.Random, products: list[Row]) -> dict[str, Any]:
    kind = rng.randrange(8)
    if kind == 0:
        op = rng.choice(["eq", "ne", "gt", "gte", "lt", "lte"])
        return {f"{P}.idProduct": {op: rng.randint(1, len(products))}}
    if kind == 1:
        op = rng.choice(["in", "nin"])
        return {f"{P}.fkTaxRate": {op: rng.sample(range(1, 8), rng.randint(0, 3))}}
    if kind == 2:
        return {f"{P}.fkTaxRate": {"isNull": rng.random() < 0.5}}
    if kind == 3:
        op = rng.choice(["gt", "lt", "gte", "lte"])
        return {f"{P}.price": {op: str(rng.choice(products)["price"])}}
    if kind == 4:
        return {f"{P}.isActive": rng.random() < 0.5} if rng.random() < 0.5 else {f"{P}.isActive": {"ne": True}}
    if kind == 5:
        return {f"{P}.sku": {"like": f"SKU-0000{rng.randint(0, 29)}%"}}
    if kind == 6:
        op = rng.choice(["gt", "lt", "ne"])
        return {f"{P}.availableFrom": {op: f"2025-{rng.randint(1, 12):02d}-01"}}
    op = rng.choice(["gt", "lt", "eq"])
    return {"productStocks.quantity": {op: rng.randint(0, 500)}}


def _random_element(rng: random.Random, products: list[Row], depth: int, budget: list[int]) -> dict[str, Any]:
    if depth >= MAX_FILTER_DEPTH or budget[0] <= 1 or rng.random() < 0.35:
        budget[0] -= 1
        return _random_leaf(rng, products)
    kind = rng.choice(["or", "and", "not"])
    if kind == "not":
        return {"not": _random_element(rng, products, depth + 1, budget)}
    return {kind: [_random_element(rng, products, depth + 1, budget) for _ in range(rng.randint(1, 3))]}


def test_random_nested_groups_match_the_python_definition(
    api: httpx.Client, products: list[Row], stocks: dict[int, list[Row]]
) -> None:
    started = time.monotonic()
    compared = 0
    for seed in SEEDS:
        if time.monotonic() - started > TIME_BUDGET:
            break
        rng = random.Random(seed)
        group = rng.choice(["or", "and"])
        members = [_random_element(rng, products, 2, [10]) for _ in range(rng.randint(1, 3))]
        element = {group: members}
        expected = expected_ids(products, stocks, element)
        found = listed(api, {f"filter[{group}]": json.dumps(members)})
        assert found == expected, f"seed {seed}: {json.dumps(element)}"
        compared += 1
    assert compared >= 10, f"only {compared} random groups compared in {TIME_BUDGET} s"


# --- collection DELETE with groups --------------------------------------------------------------------------------

META = sa.MetaData()
FG = sa.Table(
    "fg_row",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.Integer, nullable=True),
    sa.Column("tag", sa.String(20), nullable=True),
)
ALIAS = "fg-rows"
CONFIG = [
    {
        "tableName": "fg_row",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": True,
            "fields": [config_field("id", "integer"), config_field("n", "integer"), config_field("tag")],
        },
    }
]


@pytest.fixture(scope="module")
def fg(backend: Backend) -> Iterator[Backend]:
    with serving(backend, META, CONFIG):
        yield backend


def _refill(backend: Backend) -> list[Row]:
    rows = [{"id": i, "n": None if i % 4 == 0 else i % 5, "tag": "odd" if i % 2 else "even"} for i in range(1, 21)]
    backend.sql(sa.delete(FG))
    backend.sql(sa.insert(FG).values(rows))
    return rows


def _left(backend: Backend) -> list[int]:
    return [row[0] for row in backend.sql(sa.select(FG.c.id).order_by(FG.c.id))]


DELETES: list[Any] = [
    pytest.param(
        {"filter[or]": json.dumps([{"r.n": 1}, {"r.tag": "even", "r.n": {"gt": 3}}])},
        lambda r: r["n"] == 1 or (r["tag"] == "even" and r["n"] is not None and r["n"] > 3),
        id="or",
    ),
    pytest.param(
        {"filter[not]": json.dumps({"r.n": {"gte": 2}})},
        lambda r: not (r["n"] is not None and r["n"] >= 2),
        id="not-with-nulls",
    ),
    pytest.param(
        {"filter[r.tag]": "odd", "filter[and]": json.dumps([{"r.n": {"nin": [1, 3]}}])},
        lambda r: r["tag"] == "odd" and r["n"] not in (1, 3),
        id="top-level-and-nin",
    ),
]


@pytest.mark.parametrize(("params", "deleted"), DELETES)
def test_collection_delete_removes_exactly_the_rows_the_group_lists(
    fg: Backend, params: dict[str, str], deleted: Callable[[Row], bool]
) -> None:
    rows = _refill(fg)
    gone = [r["id"] for r in rows if deleted(r)]
    assert gone and len(gone) < len(rows)
    listed_before = [item["id"] for item in data(fg.client, f"/{ALIAS}", {**params, "page[limit]": ALL})]
    assert listed_before == gone
    response = fg.client.delete(f"/dynamic-entity/{ALIAS}", params=params)
    assert response.status_code == 204, response.text
    assert _left(fg) == [r["id"] for r in rows if r["id"] not in gone]


def test_collection_delete_refuses_a_bad_group_and_deletes_nothing(fg: Backend) -> None:
    rows = _refill(fg)
    response = fg.client.delete(f"/dynamic-entity/{ALIAS}", params={"filter[or]": "[]"})
    assert_error(response, 400, "2030")
    response = fg.client.delete(f"/dynamic-entity/{ALIAS}", params={"filter[or]": json.dumps([{"r.nope": 1}])})
    assert_error(response, 400, "1315", mentions=["`nope`", ALIAS])
    assert _left(fg) == [r["id"] for r in rows]
