"""SQL built from read plans (``dxapi.sql.build``), compiled for SQLite, PostgreSQL and MySQL without a database.

Plans are built from a snapshot over in-memory ``Table`` objects. The tests check that values only ever travel
as bound parameters (a hostile value is absent from the SQL text and present in the parameters), that awkward
identifiers are quoted per dialect, that ``ne`` keeps NULL rows, that the identifier ends every ORDER BY, that
limit and offset are parameters, and that plans differing only in values compile to identical SQL (so
SQLAlchemy's compiled-statement cache hits).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.sql.compiler import Compiled

from dxapi.plan.access import resolve_entity
from dxapi.plan.build import build_read_plan
from dxapi.plan.types import Condition, IncludePlan, OrderKey, ReadPlan
from dxapi.registry.installer import parse_entry
from dxapi.registry.model import EntityConfig
from dxapi.registry.snapshot import EntitySnapshot, Snapshot, build_snapshot
from dxapi.request.params import ReadRequest, parse_read_request
from dxapi.settings import Settings
from dxapi.sql.build import build_children, build_read, read_parameters, read_shape

HOSTILE = "x'; DROP TABLE t; --"

# The drivers dxapi really uses, plus SQLAlchemy's default driver per backend (other paramstyles).
DIALECT_URLS = {
    "sqlite": "sqlite+aiosqlite://",
    "postgresql": "postgresql+asyncpg://",
    "mysql": "mysql+asyncmy://",
    "sqlite-default": "sqlite://",
    "postgresql-default": "postgresql://",
    "mysql-default": "mysql://",
}


def _dialect(key: str) -> Dialect:
    dialect: Dialect = make_url(DIALECT_URLS[key]).get_dialect()()
    return dialect


def _quote(key: str, name: str) -> str:
    return f"`{name}`" if key.startswith("mysql") else f'"{name}"'


@pytest.fixture(params=list(DIALECT_URLS))
def dialect_key(request: pytest.FixtureRequest) -> str:
    key: str = request.param
    return key


# --- a snapshot over in-memory tables ------------------------------------------------------------------------


def _tables() -> dict[str, sa.Table]:
    md = sa.MetaData()
    sa.Table(
        "shop_item",
        md,
        sa.Column("id_item", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
        sa.Column("price", sa.Numeric(10, 2)),
        sa.Column("fk_group", sa.Integer),
    )
    sa.Table(
        "shop_part",
        md,
        sa.Column("id_part", sa.Integer, primary_key=True),
        sa.Column("fk_item", sa.Integer),
        sa.Column("label", sa.String(50)),
    )
    sa.Table(
        "order",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("select", sa.String(50)),
        sa.Column("group", sa.Integer),
    )
    sa.Table(
        "Mixed Case Table",
        md,
        sa.Column("Code", sa.String(20), primary_key=True),
        sa.Column("Display Name", sa.String(100)),
    )
    sa.Table(
        'we"ird`t',
        md,
        sa.Column('i"d', sa.Integer, primary_key=True),
    )
    return dict(md.tables)


def _field(name: str, visible: str, type_: str) -> dict[str, Any]:
    return {"fieldName": name, "fieldVisibleName": visible, "type": type_, "isCreatable": True, "isEditable": True}


ENTRIES: list[dict[str, Any]] = [
    {
        "tableName": "shop_item",
        "tableAlias": "items",
        "isActive": True,
        "definition": {
            "identifier": "id_item",
            "fields": [
                _field("id_item", "idItem", "integer"),
                _field("name", "name", "string"),
                _field("price", "price", "decimal"),
                _field("fk_group", "fkGroup", "integer"),
            ],
        },
        "childRelations": [
            {
                "name": "itemParts",
                "childDynamicEntityConfiguration": {"tableAlias": "parts"},
                "relationFieldMappings": [{"childFieldName": "fk_item", "parentFieldName": "id_item"}],
            }
        ],
    },
    {
        "tableName": "shop_part",
        "tableAlias": "parts",
        "isActive": True,
        "definition": {
            "identifier": "id_part",
            "fields": [
                _field("id_part", "idPart", "integer"),
                _field("fk_item", "fkItem", "integer"),
                _field("label", "label", "string"),
            ],
        },
    },
    {
        "tableName": "order",
        "tableAlias": "orders",
        "isActive": True,
        "definition": {
            "identifier": "id",
            "fields": [
                _field("id", "id", "integer"),
                _field("select", "select", "string"),
                _field("group", "group", "integer"),
            ],
        },
    },
    {
        "tableName": "Mixed Case Table",
        "tableAlias": "MixedCase",
        "isActive": True,
        "definition": {
            "identifier": "Code",
            "fields": [
                _field("Code", "code", "string"),
                _field("Display Name", "displayName", "string"),
            ],
        },
    },
    {
        "tableName": 'we"ird`t',
        "tableAlias": "weird",
        "isActive": True,
        "definition": {"identifier": 'i"d', "fields": [_field('i"d', "id", "integer")]},
    },
]


def _configs() -> list[EntityConfig]:
    configs = []
    for index, entry in enumerate(ENTRIES):
        config, problems = parse_entry(entry, f"entry[{index}]")
        assert config is not None and not problems, problems
        configs.append(config)
    return configs


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    built = build_snapshot(7, _configs(), _tables())
    assert dict(built.unavailable) == {}
    assert set(built.entities) == {"items", "parts", "orders", "MixedCase", "weird"}
    return built


SETTINGS = Settings(database_url="sqlite:///unused.db", default_page_limit=100, max_page_limit=500)


def every_scope(alias: str, action: str) -> bool:
    return True


def _plan(snapshot: Snapshot, alias: str, *pairs: tuple[str, str], identifier: str | None = None) -> ReadPlan:
    request = parse_read_request(list(pairs), 50)
    return build_read_plan(
        snapshot, resolve_entity(snapshot, alias), request, SETTINGS, allows=every_scope, identifier=identifier
    )


def _hand_plan(
    entity: EntitySnapshot,
    conditions: tuple[Condition, ...] = (),
    *,
    offset: int = 0,
    limit: int = 100,
    order: tuple[OrderKey, ...] | None = None,
) -> ReadPlan:
    return ReadPlan(
        entity=entity,
        conditions=conditions,
        order=order if order is not None else (OrderKey(entity.identifier, False),),
        offset=offset,
        limit=limit,
        includes=(),
        single=False,
    )


def _compile(statement: sa.Select[Any], dialect_key: str) -> Compiled:
    return statement.compile(dialect=_dialect(dialect_key))


def _flat(values: Any) -> Iterator[Any]:
    if isinstance(values, (list, tuple, set)):
        for v in values:
            yield from _flat(v)
    else:
        yield values


def _param_values(compiled: Compiled, values: dict[str, Any] | None = None) -> list[Any]:
    """Every bound value as the driver receives it (read statements take theirs from read_parameters)."""
    return list(_flat(list(compiled.construct_params(values).values())))


# --- bound values only ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        ("eq", HOSTILE),
        ("ne", HOSTILE),
        ("in", (HOSTILE, "ok")),
        ("gt", HOSTILE),
        ("gte", HOSTILE),
        ("lt", HOSTILE),
        ("lte", HOSTILE),
        ("like", HOSTILE + "%"),
    ],
)
def test_values_are_never_inline(snapshot: Snapshot, dialect_key: str, operator: str, value: Any) -> None:
    entity = snapshot.entities["items"]
    plan = _hand_plan(entity, (Condition(entity.by_name["name"], operator, value),))
    compiled = _compile(build_read(plan), dialect_key)
    text = str(compiled)
    assert "DROP" not in text and HOSTILE not in text
    assert any(isinstance(v, str) and HOSTILE in v for v in _param_values(compiled, read_parameters(plan)))
    # Also after expanding IN lists into individual parameters, as the driver sees it.
    assert set(read_parameters(plan)) <= set(compiled.params)


def test_values_from_a_parsed_request_are_bound(snapshot: Snapshot, dialect_key: str) -> None:
    plan = _plan(
        snapshot,
        "items",
        ("filter[items.name]", HOSTILE),
        ("filter[x.price]", '{"gte": "10.50", "lt": 99}'),
        ("filter[x.idItem]", '{"in": [1, 2, 3]}'),
    )
    compiled = _compile(build_read(plan), dialect_key)
    text = str(compiled)
    assert HOSTILE not in text and "10.50" not in text and "99" not in text
    values = _param_values(compiled, read_parameters(plan))
    assert HOSTILE in values
    assert 1 in values and 3 in values


def test_hostile_identifier_from_a_single_read_is_bound(snapshot: Snapshot, dialect_key: str) -> None:
    plan = _plan(snapshot, "MixedCase", identifier=HOSTILE)
    compiled = _compile(build_read(plan), dialect_key)
    assert HOSTILE not in str(compiled)
    assert HOSTILE in _param_values(compiled, read_parameters(plan))


# --- identifier quoting --------------------------------------------------------------------------------------


def test_reserved_words_are_quoted(snapshot: Snapshot, dialect_key: str) -> None:
    plan = _plan(snapshot, "orders", ("filter[o.select]", "a"), ("filter[o.group]", '{"ne": 1}'), ("sort", "-group"))
    text = " ".join(str(_compile(build_read(plan), dialect_key)).split())
    order, select_, group = (_quote(dialect_key, n) for n in ("order", "select", "group"))
    assert f"FROM {order}" in text
    assert f"{order}.{select_}" in text
    assert f"ORDER BY {order}.{group} DESC" in text


def test_mixed_case_names_with_spaces_are_quoted(snapshot: Snapshot, dialect_key: str) -> None:
    plan = _plan(snapshot, "MixedCase", ("filter[m.displayName]", "x"), ("sort", "displayName"))
    text = " ".join(str(_compile(build_read(plan), dialect_key)).split())
    table, code, name = (_quote(dialect_key, n) for n in ("Mixed Case Table", "Code", "Display Name"))
    assert f"FROM {table}" in text
    assert f"{table}.{name}" in text
    assert f"{table}.{code}" in text
    assert "mixed case table" not in text  # case kept


def test_quote_characters_inside_identifiers_are_escaped(snapshot: Snapshot, dialect_key: str) -> None:
    text = str(_compile(build_read(_plan(snapshot, "weird")), dialect_key))
    if dialect_key.startswith("mysql"):
        assert '`we"ird``t`' in text
        assert '`i"d`' in text
    else:
        assert '"we""ird`t"' in text
        assert '"i""d"' in text


# --- operator semantics --------------------------------------------------------------------------------------


def test_ne_keeps_null_rows(snapshot: Snapshot, dialect_key: str) -> None:
    plan = _plan(snapshot, "items", ("filter[i.fkGroup]", '{"ne": 3}'))
    text = str(_compile(build_read(plan), dialect_key))
    assert "!=" in text or "<>" in text
    assert "fk_group IS NULL" in text
    assert " OR " in text


def test_is_null_operator(snapshot: Snapshot, dialect_key: str) -> None:
    null = str(_compile(build_read(_plan(snapshot, "items", ("filter[i.fkGroup]", '{"isNull": true}'))), dialect_key))
    not_null = str(
        _compile(build_read(_plan(snapshot, "items", ("filter[i.fkGroup]", '{"isNull": false}'))), dialect_key)
    )
    assert "fk_group IS NULL" in null
    assert "fk_group IS NOT NULL" in not_null


def test_several_operators_and_filters_and_together(snapshot: Snapshot, dialect_key: str) -> None:
    plan = _plan(snapshot, "items", ("filter[i.price]", '{"gte": 1, "lt": 5}'), ("filter[i.name]", '{"like": "a%"}'))
    text = str(_compile(build_read(plan), dialect_key))
    assert text.count(" AND ") >= 2
    assert " OR " not in text
    # SQLite's LIKE ignores ASCII case; dxapi's case-sensitive `like` is a GLOB there.
    assert (" GLOB " if dialect_key.startswith("sqlite") else " LIKE ") in text


# --- order, limit and offset ---------------------------------------------------------------------------------


def _order_by(text: str) -> str:
    flat = " ".join(text.split())
    return flat.split(" ORDER BY ", 1)[1].split(" LIMIT ", 1)[0]


def test_identifier_is_the_default_order(snapshot: Snapshot, dialect_key: str) -> None:
    text = str(_compile(build_read(_plan(snapshot, "items")), dialect_key))
    assert _order_by(text) == "shop_item.id_item ASC"


def test_identifier_is_appended_as_tie_breaker(snapshot: Snapshot, dialect_key: str) -> None:
    text = str(_compile(build_read(_plan(snapshot, "items", ("sort", "-price,name"))), dialect_key))
    assert _order_by(text) == "shop_item.price DESC, shop_item.name ASC, shop_item.id_item ASC"


def test_identifier_in_sort_is_not_repeated(snapshot: Snapshot, dialect_key: str) -> None:
    text = str(_compile(build_read(_plan(snapshot, "items", ("sort", "-idItem,name"))), dialect_key))
    assert _order_by(text) == "shop_item.id_item DESC, shop_item.name ASC"


def test_limit_and_offset_are_bound(snapshot: Snapshot, dialect_key: str) -> None:
    plan = _plan(snapshot, "items", ("page[limit]", "37"), ("page[offset]", "1234"))
    assert (plan.limit, plan.offset) == (37, 1234)
    compiled = _compile(build_read(plan), dialect_key)
    text = str(compiled)
    assert "37" not in text and "1234" not in text
    assert "LIMIT" in text
    values = _param_values(compiled, read_parameters(plan))
    assert 37 in values and 1234 in values


def test_single_read_fetches_two_rows_and_does_not_order(snapshot: Snapshot, dialect_key: str) -> None:
    plan = _plan(snapshot, "items", identifier="42")
    compiled = _compile(build_read(plan), dialect_key)
    text = str(compiled)
    assert "ORDER BY" not in text
    assert "LIMIT" in text
    values = _param_values(compiled, read_parameters(plan))
    assert 42 in values and 2 in values


def test_children_query_binds_parent_keys_and_orders_by_key_then_identifier(
    snapshot: Snapshot, dialect_key: str
) -> None:
    items = snapshot.entities["items"]
    relation = items.relations["itemParts"]
    include = IncludePlan(relation, snapshot.entities["parts"], ())
    compiled = _compile(build_children(include, [HOSTILE, 5]), dialect_key)
    text = " ".join(str(compiled).split())
    assert HOSTILE not in text
    assert HOSTILE in _param_values(compiled)
    assert text.endswith("ORDER BY shop_part.fk_item, shop_part.id_part")


# --- statement shape is independent of values ----------------------------------------------------------------

SHAPES: list[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = [
    ((("filter[i.name]", "a"),), (("filter[i.name]", HOSTILE),)),
    (
        (("filter[i.price]", '{"gte": 1, "lt": 2}'), ("page[limit]", "10")),
        (("filter[i.price]", '{"gte": "99.99", "lt": 1000}'), ("page[limit]", "500")),
    ),
    ((("filter[i.idItem]", '{"in": [1, 2]}'),), (("filter[i.idItem]", '{"in": [5, 6]}'),)),
    (
        (("filter[i.fkGroup]", '{"ne": 1}'), ("page[offset]", "0")),
        (("filter[i.fkGroup]", '{"ne": 2}'), ("page[offset]", "99999")),
    ),
    (
        (("filter[i.name]", '{"like": "a%"}'), ("sort", "-price")),
        (("filter[i.name]", '{"like": "%zz_"}'), ("sort", "-price")),
    ),
]


@pytest.mark.parametrize(("first", "second"), SHAPES)
def test_same_shape_compiles_to_identical_sql(
    snapshot: Snapshot, dialect_key: str, first: tuple[tuple[str, str], ...], second: tuple[tuple[str, str], ...]
) -> None:
    plan_a, plan_b = _plan(snapshot, "items", *first), _plan(snapshot, "items", *second)
    a, b = build_read(plan_a), build_read(plan_b)
    compiled_a, compiled_b = _compile(a, dialect_key), _compile(b, dialect_key)
    assert str(compiled_a) == str(compiled_b)
    assert read_shape(plan_a) == read_shape(plan_b)  # the key of dxapi's statement cache
    assert read_parameters(plan_a) != read_parameters(plan_b)
    key_a, key_b = a._generate_cache_key(), b._generate_cache_key()
    assert key_a is not None and key_a == key_b


def test_in_lists_of_different_lengths_have_different_shapes(snapshot: Snapshot) -> None:
    one = _plan(snapshot, "items", ("filter[i.idItem]", '{"in": [1]}'))
    six = _plan(snapshot, "items", ("filter[i.idItem]", '{"in": [1, 2, 3, 4, 5, 6]}'))
    assert read_shape(one) != read_shape(six)
    assert read_parameters(six) == {**{f"p0_{j}": j + 1 for j in range(6)}, "limit": 100, "offset": 0}


def test_single_reads_share_one_statement(snapshot: Snapshot, dialect_key: str) -> None:
    a = _compile(build_read(_plan(snapshot, "items", identifier="1")), dialect_key)
    b = _compile(build_read(_plan(snapshot, "items", identifier="987654")), dialect_key)
    assert str(a) == str(b)


def test_different_shapes_compile_differently(snapshot: Snapshot, dialect_key: str) -> None:
    eq = str(_compile(build_read(_plan(snapshot, "items", ("filter[i.name]", "a"))), dialect_key))
    ne = str(_compile(build_read(_plan(snapshot, "items", ("filter[i.name]", '{"ne": "a"}'))), dialect_key))
    assert eq != ne


def test_plan_built_by_hand_matches_plan_from_request(snapshot: Snapshot, dialect_key: str) -> None:
    entity = snapshot.entities["items"]
    by_hand = _hand_plan(entity, (Condition(entity.by_name["name"], "eq", "a"),), limit=100)
    parsed = _plan(snapshot, "items", ("filter[i.name]", "a"))
    assert parsed == ReadPlan(entity, by_hand.conditions, by_hand.order, 0, 100, (), False)
    assert str(_compile(build_read(by_hand), dialect_key)) == str(_compile(build_read(parsed), dialect_key))


def test_empty_request_uses_default_limit(snapshot: Snapshot) -> None:
    plan = build_read_plan(snapshot, snapshot.entities["items"], ReadRequest(), SETTINGS, allows=every_scope)
    assert (plan.offset, plan.limit, plan.single) == (0, SETTINGS.default_page_limit, False)
