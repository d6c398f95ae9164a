"""The demo shop builds deterministically and its configuration (dxapi/shop-config.json) matches its tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from dxapi.demo import SHOP_CONFIG, SHOP_TABLES, create_shop, shop_config, shop_metadata

EXAMPLE_COPY = Path(__file__).resolve().parents[2] / "examples" / "shop-config.json"
PRODUCTS = 200

# Which validation rules each field type may carry (DESIGN.md §3).
_COMMON_RULES = {"isRequired", "constraints", "enum", "format"}
_TYPE_RULES = {
    "integer": {"min", "max"},
    "float": {"min", "max"},
    "decimal": {"min", "max", "precision", "scale"},
    "date": {"min", "max"},
    "datetime": set(),
    "string": {"minLength", "maxLength", "pattern"},
    "boolean": set(),
    "json": set(),
    "uuid": set(),
}


def _dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every shop table as the driver returns it, in primary-key order."""
    metadata = shop_metadata()
    dump: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for name in SHOP_TABLES:
            (pk,) = metadata.tables[name].primary_key.columns
            # Raw driver rows: no SQLAlchemy type processing, so this compares exactly what was stored.
            result = connection.exec_driver_sql(f"SELECT * FROM {name} ORDER BY {pk.name}")
            dump[name] = [tuple(row) for row in result]
    return dump


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, int], sa.Engine]]:
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('demo') / 'shop.db'}")
    counts = create_shop(engine, products=PRODUCTS)
    yield counts, engine
    engine.dispose()


def test_counts(shop: tuple[dict[str, int], sa.Engine]) -> None:
    counts, engine = shop
    assert list(counts) == list(SHOP_TABLES)
    assert counts["shop_product"] == PRODUCTS
    assert 40 <= counts["shop_country"] <= 60
    assert 35 <= counts["shop_category"] <= 45
    assert counts["shop_tax_rate"] > counts["shop_country"] // 2
    assert PRODUCTS <= counts["shop_stock"] <= 2 * PRODUCTS
    with engine.connect() as connection:
        for name, expected in counts.items():
            assert connection.scalar(sa.text(f"SELECT COUNT(*) FROM {name}")) == expected
        inactive = connection.scalar(sa.text("SELECT COUNT(*) FROM shop_product WHERE is_active = 0"))
        assert inactive is not None and 0 < inactive < PRODUCTS // 4


def test_updated_at_strictly_increasing_with_id(shop: tuple[dict[str, int], sa.Engine]) -> None:
    _, engine = shop
    product = shop_metadata().tables["shop_product"]
    query = sa.select(product.c.id_product, product.c.created_at, product.c.updated_at).order_by(product.c.id_product)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    assert [row.id_product for row in rows] == list(range(1, PRODUCTS + 1))
    updated = [row.updated_at for row in rows]
    assert all(isinstance(value, datetime) for value in updated)
    assert all(earlier < later for earlier, later in pairwise(updated))
    assert all(row.created_at <= row.updated_at for row in rows)


def test_every_foreign_key_resolves(shop: tuple[dict[str, int], sa.Engine]) -> None:
    _, engine = shop
    metadata = shop_metadata()
    checked = 0
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for fk in table.foreign_keys:
                # Alias the referenced table so the self-reference in shop_category correlates correctly.
                child, parent = fk.parent, fk.column.table.alias("referenced").c[fk.column.name]
                query = (
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(child.isnot(None))
                    .where(~sa.exists().where(parent == child))
                )
                assert connection.scalar(query) == 0, f"dangling {table.name}.{child.name}"
                checked += 1
        # The self-referencing tree is two levels deep: every parent is a root.
        depth = connection.scalar(
            sa.text(
                "SELECT COUNT(*) FROM shop_category c"
                " JOIN shop_category p ON p.id_category = c.fk_parent_category"
                " WHERE p.fk_parent_category IS NOT NULL"
            )
        )
        assert depth == 0
    assert checked == 5


def test_deterministic(shop: tuple[dict[str, int], sa.Engine], tmp_path: Path) -> None:
    counts, engine = shop
    first = _dump(engine)
    # Rebuilding over the existing tables (drop + create) and into a fresh file both reproduce it exactly.
    assert create_shop(engine, products=PRODUCTS) == counts
    assert _dump(engine) == first
    other = sa.create_engine(f"sqlite:///{tmp_path / 'again.db'}")
    try:
        assert create_shop(other, products=PRODUCTS) == counts
        assert _dump(other) == first
        create_shop(other, products=PRODUCTS, seed=8)
        assert _dump(other)["shop_product"] != first["shop_product"]
    finally:
        other.dispose()


def test_ddl_compiles_for_every_backend() -> None:
    for backend in ("sqlite://", "postgresql://", "mysql://"):
        dialect = sa.make_url(backend).get_dialect()()
        for table in shop_metadata().sorted_tables:
            ddl = str(CreateTable(table).compile(dialect=dialect))
            assert "JSON" not in ddl.upper()
            for index in table.indexes:
                CreateIndex(index).compile(dialect=dialect)
    names: list[object] = []
    for table in shop_metadata().tables.values():
        names.extend(constraint.name for constraint in table.constraints)
        names.extend(index.name for index in table.indexes)
    assert all(isinstance(name, str) and len(name) <= 63 for name in names)
    assert "ix_shop_product_updated_at" in names


def _load_config() -> list[dict[str, Any]]:
    config = json.loads(SHOP_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(config, list) and config == shop_config()
    return config


def test_example_is_a_copy_of_the_packaged_config() -> None:
    """One source of truth: the package ships the file ``dxapi demo`` reads; examples/ holds a copy of it."""
    assert EXAMPLE_COPY.read_bytes() == SHOP_CONFIG.read_bytes(), (
        "examples/shop-config.json differs from dxapi/shop-config.json: edit the packaged file, then copy it "
        "to examples/"
    )


def test_config_fields_exist_and_rules_fit_types() -> None:
    tables = shop_metadata().tables
    config = _load_config()
    assert [entry["tableName"] for entry in config] == list(SHOP_TABLES)
    for entry in config:
        table = tables[entry["tableName"]]
        definition = entry["definition"]
        fields = definition["fields"]
        names = [field["fieldName"] for field in fields]
        visible = [field["fieldVisibleName"] for field in fields]
        assert set(names) <= set(table.columns.keys()), entry["tableAlias"]
        assert len(set(names)) == len(names) and len(set(visible)) == len(visible)
        assert definition["identifier"] in names
        assert entry["isActive"] is True
        for field in fields:
            rules = set(field["validation"])
            assert rules <= _COMMON_RULES | _TYPE_RULES[field["type"]], field["fieldName"]
            if field["fieldName"] == definition["identifier"]:
                assert field["isCreatable"] is False and field["isEditable"] is False


def test_config_relations_map_existing_columns() -> None:
    tables = shop_metadata().tables
    config = _load_config()
    by_alias = {entry["tableAlias"]: entry for entry in config}
    relations = 0
    for entry in config:
        parent = tables[entry["tableName"]]
        for relation in entry["childRelations"]:
            child_alias = relation["childDynamicEntityConfiguration"]["tableAlias"]
            child = tables[by_alias[child_alias]["tableName"]]
            for mapping in relation["relationFieldMappings"]:
                assert mapping["parentFieldName"] in parent.columns, relation["name"]
                assert mapping["childFieldName"] in child.columns, relation["name"]
            relations += 1
    assert relations == 4
