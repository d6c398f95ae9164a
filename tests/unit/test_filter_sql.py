"""The SQL of filter groups and relation filters, compiled without a database (issue 14).

Statement shapes (``read_shape``, the statement-cache key) must tell every group shape apart and be equal for
equal shapes whatever the values; bind names follow the depth-first order of the conditions; a relation
filter is an ``EXISTS`` over an alias of the related table, so it never correlates with the outer row.
"""

from __future__ import annotations

import json

import pytest

from dxapi.errors import ApiError
from dxapi.plan.types import Exists, Group, ReadPlan
from dxapi.registry.snapshot import Snapshot, build_snapshot
from dxapi.sql.build import build_read, read_parameters, read_shape
from tests.unit.test_sql import DIALECT_URLS, _compile, _configs, _plan, _tables


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return build_snapshot(7, _configs(), _tables())


@pytest.fixture(params=list(DIALECT_URLS))
def dialect_key(request: pytest.FixtureRequest) -> str:
    key: str = request.param
    return key


A = {"i.price": {"lt": "10"}}
B = {"i.name": {"like": "a%"}}
C = {"itemParts.label": "x"}

SHAPES = [
    ("or", [A, B]),
    ("and", [A, B]),
    ("or", [B, A]),
    ("or", [{"not": A}, B]),
    ("or", [A, {"not": B}]),
    ("not", {"or": [A, B]}),
    ("or", [{**A, **B}, C]),
    ("or", [A, C]),
    ("and", [C, C]),
    ("and", [{"itemParts.label": "x", "itemParts.idPart": 1}]),
    ("or", [A, {"i.price": {"in": [1, 2]}}]),
    ("or", [A, {"i.price": {"nin": [1, 2]}}]),
]


def _group_plan(snapshot: Snapshot, operator: str, value: object) -> ReadPlan:
    return _plan(snapshot, "items", (f"filter[{operator}]", json.dumps(value)))


def test_every_group_shape_has_its_own_statement(snapshot: Snapshot, dialect_key: str) -> None:
    plans = [_group_plan(snapshot, operator, value) for operator, value in SHAPES]
    shapes = {read_shape(plan) for plan in plans}
    sql = {str(_compile(build_read(plan), dialect_key)) for plan in plans}
    assert len(shapes) == len(SHAPES)
    assert len(sql) == len(SHAPES)


def test_equal_shapes_with_other_values_share_a_statement(snapshot: Snapshot, dialect_key: str) -> None:
    one = _group_plan(snapshot, "or", [{"i.price": {"lt": "10"}}, {"not": {"itemParts.label": "x"}}])
    two = _group_plan(snapshot, "or", [{"i.price": {"lt": "99"}}, {"not": {"itemParts.label": "y"}}])
    assert read_shape(one) == read_shape(two)
    assert str(_compile(build_read(one), dialect_key)) == str(_compile(build_read(two), dialect_key))
    assert read_parameters(one) != read_parameters(two)


def test_bind_names_follow_the_conditions_depth_first(snapshot: Snapshot) -> None:
    plan = _plan(
        snapshot,
        "items",
        ("filter[i.idItem]", '{"gt":0}'),
        ("filter[or]", json.dumps([{"i.price": {"in": [1, 2]}}, {"not": {"itemParts.label": {"nin": ["x"]}}}])),
    )
    assert isinstance(plan.conditions[1], Group)
    assert isinstance(plan.conditions[1].items[1].items[0], Exists)  # type: ignore[union-attr]
    assert read_parameters(plan) == {"p0": 0, "p1_0": 1, "p1_1": 2, "p2_0": "x", "limit": 100, "offset": 0}


def test_relation_filter_is_exists_over_an_alias(snapshot: Snapshot, dialect_key: str) -> None:
    sql = str(_compile(build_read(_plan(snapshot, "items", ("filter[itemParts.label]", "x"))), dialect_key))
    assert "EXISTS (SELECT 1" in sql
    assert "shop_part AS shop_part_1" in sql.replace('"', "").replace("`", "")


def test_not_is_the_two_valued_complement(snapshot: Snapshot, dialect_key: str) -> None:
    sql = str(_compile(build_read(_group_plan(snapshot, "not", A)), dialect_key))
    # NOT coalesce(…, false) on PostgreSQL; coalesce(…, 0) = 0 where booleans are integers.
    assert "coalesce(" in sql and ("NOT coalesce(" in sql or ") = 0" in sql)


@pytest.mark.parametrize(
    ("operator", "value", "code"),
    [
        ("or", [{"itemParts.nope": 1}], "1315"),
        ("or", [{"itemParts.x.label": 1}], "1313"),
        ("and", [], "2030"),
    ],
)
def test_planning_errors(snapshot: Snapshot, operator: str, value: object, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        _group_plan(snapshot, operator, value)
    assert caught.value.items[0].code == code
