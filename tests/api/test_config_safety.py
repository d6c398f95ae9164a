"""Configuration safety on every backend: identifiers that cannot name one row, and views over denied tables.

An identifier must be the primary key (one column) or a single-column UNIQUE NOT NULL key (a unique constraint
or a full unique index); composite keys are not supported as identifiers. A view declares no keys, so no view
can be served; a view that reads dxapi's own tables, the catalogs or the configured deny-list is refused as a
denied table. The same checks run at import, in ``dxapi config check`` and when the snapshot is built: an
entity stored behind dxapi's back on such a table answers 503 ``5003`` and never touches a row.

The tables and views of this module (``cs_*``) are created with direct SQL and removed again at the end, with
every entity of this module (aliases ``cs-*``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from dxapi.db import create_engine
from dxapi.registry.model import ConfigError
from dxapi.registry.store import parse_import, save_entities
from dxapi.registry.tables import dx_audit, dx_config_version, dx_entity, dx_relation
from tests.api.test_cli import run
from tests.conftest import Backend, unconfigure

API = "/dynamic-entity"
RULE = "The identifier must be the primary key or a single-column UNIQUE NOT NULL key"

TABLES = {
    "cs_supplier": "CREATE TABLE cs_supplier (id INTEGER PRIMARY KEY, code VARCHAR(20) NOT NULL, "
    "name VARCHAR(40) NOT NULL)",
    "cs_store_stock": "CREATE TABLE cs_store_stock (store VARCHAR(10) NOT NULL, sku VARCHAR(20) NOT NULL, "
    "qty INTEGER NOT NULL, PRIMARY KEY (store, sku))",
    "cs_stock_line": "CREATE TABLE cs_stock_line (store VARCHAR(10) NOT NULL, sku VARCHAR(20) NOT NULL, "
    "line_code VARCHAR(20) NOT NULL, ean VARCHAR(20) NULL, ref INTEGER NOT NULL, "
    "qty INTEGER NOT NULL, PRIMARY KEY (store, sku), "
    "CONSTRAINT uq_cs_stock_line_code UNIQUE (line_code), "
    "CONSTRAINT uq_cs_stock_line_ean UNIQUE (ean))",
    "cs_secret": "CREATE TABLE cs_secret (id INTEGER PRIMARY KEY, token VARCHAR(40) NOT NULL)",
}
INDEXES = ["CREATE UNIQUE INDEX ux_cs_stock_line_ref ON cs_stock_line (ref)"]
# A unique index that does not make its column unique: partial (PostgreSQL, SQLite) or over a prefix (MariaDB).
PARTIAL = {
    "sqlite": [
        "CREATE TABLE cs_partial (id INTEGER PRIMARY KEY, code VARCHAR(20) NOT NULL, active INTEGER NOT NULL)",
        "CREATE UNIQUE INDEX ux_cs_partial_code ON cs_partial (code) WHERE active = 1",
    ],
    "postgresql": [
        "CREATE TABLE cs_partial (id INTEGER PRIMARY KEY, code VARCHAR(20) NOT NULL, active INTEGER NOT NULL)",
        "CREATE UNIQUE INDEX ux_cs_partial_code ON cs_partial (code) WHERE active = 1",
    ],
    "mysql": [
        "CREATE TABLE cs_partial (id INTEGER PRIMARY KEY, code VARCHAR(20) NOT NULL, "
        "active INTEGER NOT NULL, UNIQUE KEY ux_cs_partial_code (code(4)))"
    ],
}
# In creation order (a view over a view comes after it); dropped in reverse.
VIEWS = {
    "cs_user_view": "SELECT id, email, password_hash FROM dx_user",
    "cs_client_view": "SELECT id, client_id, secret_hash FROM dx_client",
    "cs_client_view2": "SELECT id, client_id, secret_hash FROM cs_client_view",
    "cs_supplier_view": "SELECT id, code, name FROM cs_supplier",
    "cs_secret_view": "SELECT id, token FROM cs_secret",
}
# The same view over dx_user, written with each backend's quoting (and, where names ignore case, in capitals).
QUOTED_VIEW = {
    "sqlite": 'SELECT "id", "email" FROM "DX_USER"',
    "postgresql": 'SELECT "id", "email" FROM "dx_user"',
    "mysql": "SELECT `id`, `email` FROM `dx_user`",
}
# A view over each backend's catalog.
CATALOG_VIEW = {
    "sqlite": ("SELECT rowid AS id, name FROM sqlite_master", "sqlite_master"),
    "postgresql": ("SELECT 1 AS id, table_name AS name FROM information_schema.tables", "information_schema.tables"),
    "mysql": ("SELECT 1 AS id, User AS name FROM mysql.user", "mysql.user"),
}
SUPPLIERS = [(1, "S1", "first"), (2, "S1", "second"), (3, "S2", "third")]
STORE_STOCK = [("A", "x", 1), ("A", "y", 2), ("B", "x", 3)]
STOCK_LINES = [("A", "x", "L1", None, 10, 1), ("A", "y", "L2", None, 20, 2), ("B", "x", "L3", "4006381333931", 30, 3)]


def field(name: str, type_: str = "string", editable: bool = True) -> dict[str, Any]:
    return {"fieldName": name, "fieldVisibleName": name, "type": type_, "isCreatable": editable, "isEditable": editable}


def entry(
    alias: str, table: str, identifier: str, fields: list[dict[str, Any]], deletable: bool = True
) -> dict[str, Any]:
    return {
        "tableName": table,
        "tableAlias": alias,
        "isActive": True,
        "definition": {"identifier": identifier, "isDeletable": deletable, "fields": fields},
    }


def suppliers(identifier: str = "code", table: str = "cs_supplier", alias: str = "cs-suppliers") -> dict[str, Any]:
    return entry(alias, table, identifier, [field("id", "integer", False), field("code"), field("name")])


def store_stock(identifier: str = "store") -> dict[str, Any]:
    return entry(
        "cs-store-stock", "cs_store_stock", identifier, [field("store"), field("sku"), field("qty", "integer")]
    )


def stock_lines(identifier: str) -> dict[str, Any]:
    return entry(
        "cs-stock-lines",
        "cs_stock_line",
        identifier,
        [
            field("store"),
            field("sku"),
            field("line_code"),
            field("ean"),
            field("ref", "integer"),
            field("qty", "integer"),
        ],
    )


def view_entry(alias: str, view: str, fields: tuple[str, ...] = ("id", "client_id")) -> dict[str, Any]:
    return entry(alias, view, "id", [field("id", "integer", False), *(field(f) for f in fields[1:])], deletable=False)


def not_unique(alias: str, column: str, table: str, reason: str, eligible: str) -> str:
    return (
        f"`{alias}`: identifier `{column}` is not a unique key of `{table}`: {reason}. {RULE}; "
        f"eligible here: {eligible}"
    )


def denied_view(alias: str, view: str, denied: str) -> str:
    return (
        f"`{alias}`: Table name is not allowed for dynamic entity. Table: {view} "
        f"(a view that reads the denied table `{denied}`)"
    )


NO_KEY = "no primary key, UNIQUE constraint or unique index covers exactly this column"
COMPOSITE = "it is part of the composite primary key (store, sku), and composite keys are not supported as identifiers"


# --- fixtures and helpers -------------------------------------------------------------------------------------


def _drop_all(backend: Backend) -> None:
    for view in ["cs_quoted_view", "cs_catalog_view", *reversed(VIEWS)]:
        backend.sql(f"DROP VIEW IF EXISTS {view}")
    for table in ["cs_partial", *TABLES]:
        backend.sql(f"DROP TABLE IF EXISTS {table}")


def _unconfigure(backend: Backend) -> None:
    """Remove every entity of this module, behind dxapi's back, and wait until the server has noticed."""

    async def go() -> int:
        engine = create_engine(backend.url)
        try:
            return await unconfigure(engine, alias_like="cs-%")
        finally:
            await engine.dispose()

    backend.wait_for_version(backend.run(go()))


@pytest.fixture(scope="module")
def schema(backend: Backend) -> Iterator[None]:
    _drop_all(backend)
    for statement in [*TABLES.values(), *INDEXES, *PARTIAL[backend.name]]:
        backend.sql(statement)
    for view, select in VIEWS.items():
        backend.sql(f"CREATE VIEW {view} AS {select}")
    backend.sql(f"CREATE VIEW cs_quoted_view AS {QUOTED_VIEW[backend.name]}")
    backend.sql(f"CREATE VIEW cs_catalog_view AS {CATALOG_VIEW[backend.name][0]}")
    for row in SUPPLIERS:
        backend.sql("INSERT INTO cs_supplier (id, code, name) VALUES (:a, :b, :c)", a=row[0], b=row[1], c=row[2])
    for row in STORE_STOCK:
        backend.sql("INSERT INTO cs_store_stock (store, sku, qty) VALUES (:a, :b, :c)", a=row[0], b=row[1], c=row[2])
    for row in STOCK_LINES:
        backend.sql(
            "INSERT INTO cs_stock_line (store, sku, line_code, ean, ref, qty) VALUES (:a, :b, :c, :d, :e, :f)",
            a=row[0],
            b=row[1],
            c=row[2],
            d=row[3],
            e=row[4],
            f=row[5],
        )
    try:
        yield
    finally:
        _unconfigure(backend)
        _drop_all(backend)


@pytest.fixture
def clean(backend: Backend, schema: None) -> Iterator[None]:
    """Whatever a test configures on this module's tables is gone afterwards."""
    yield
    _unconfigure(backend)


def config_state(backend: Backend) -> dict[str, Any]:
    return {
        "entities": [tuple(r) for r in backend.sql(sa.select(dx_entity).order_by(dx_entity.c.id))],
        "relations": [tuple(r) for r in backend.sql(sa.select(dx_relation).order_by(dx_relation.c.id))],
        "version": backend.sql(sa.select(dx_config_version.c.version))[0][0],
        "audit": backend.sql(sa.select(sa.func.count()).select_from(dx_audit))[0][0],
    }


def refused(backend: Backend, entries: list[dict[str, Any]], deny: tuple[str, ...] = ()) -> list[str]:
    """Import ``entries`` as ``dxapi config import`` does; assert it is refused and changed nothing."""
    before = config_state(backend)

    async def go() -> None:
        engine = create_engine(backend.url)
        try:
            await save_entities(engine, parse_import(entries), actor="test", action="import", deny=deny)
        finally:
            await engine.dispose()

    with pytest.raises(ConfigError) as caught:
        backend.run(go())
    assert config_state(backend) == before
    return caught.value.problems


def store_behind_dxapi(backend: Backend, entries: list[dict[str, Any]]) -> None:
    """Write entities straight into ``dx_entity`` (no checks) and bump the version, as an operator might."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    for raw in entries:
        backend.sql(
            sa.insert(dx_entity).values(
                table_alias=raw["tableAlias"],
                table_name=raw["tableName"],
                is_active=True,
                definition=orjson.dumps(raw["definition"]).decode(),
                created_at=now,
                updated_at=now,
                updated_by="sql",
            )
        )
    backend.sql(
        sa.update(dx_config_version).where(dx_config_version.c.id == 1).values(version=dx_config_version.c.version + 1)
    )
    backend.wait_for_version(int(backend.sql(sa.select(dx_config_version.c.version))[0][0]))


def assert_unavailable(response: httpx.Response, alias: str) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    body = response.json()
    assert [item["code"] for item in body] == ["5003"], body
    assert response.headers["x-dxapi-error-code"] == "5003"
    assert f"`{alias}`" in body[0]["message"]
    assert "argon2" not in response.text and "$" not in response.text


def rows(backend: Backend, table: str, order: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in backend.sql(f"SELECT * FROM {table} ORDER BY {order}")]


# --- identifiers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: suppliers("code"), not_unique("cs-suppliers", "code", "cs_supplier", NO_KEY, "id")),
        (lambda: suppliers("name"), not_unique("cs-suppliers", "name", "cs_supplier", NO_KEY, "id")),
        (lambda: store_stock("store"), not_unique("cs-store-stock", "store", "cs_store_stock", COMPOSITE, "none")),
        (lambda: store_stock("sku"), not_unique("cs-store-stock", "sku", "cs_store_stock", COMPOSITE, "none")),
        (lambda: store_stock("qty"), not_unique("cs-store-stock", "qty", "cs_store_stock", NO_KEY, "none")),
        (
            lambda: stock_lines("store"),
            not_unique("cs-stock-lines", "store", "cs_stock_line", COMPOSITE, "line_code, ref"),
        ),
        (
            lambda: stock_lines("ean"),
            not_unique("cs-stock-lines", "ean", "cs_stock_line", "its UNIQUE key allows NULL", "line_code, ref"),
        ),
        (
            lambda: entry("cs-partial", "cs_partial", "code", [field("id", "integer"), field("code")]),
            not_unique(
                "cs-partial",
                "code",
                "cs_partial",
                "its UNIQUE index `ux_cs_partial_code` covers only some rows or a prefix of the values",
                "id",
            ),
        ),
    ],
    ids=[
        "non-unique",
        "non-unique-2",
        "composite-first",
        "composite-second",
        "composite-other",
        "composite-member",
        "unique-nullable",
        "partial-or-prefix-index",
    ],
)
def test_identifier_that_may_name_several_rows_is_refused(
    backend: Backend, clean: None, make: Any, problem: str
) -> None:
    assert refused(backend, [make()]) == [problem]


@pytest.mark.parametrize("identifier", ["line_code", "ref"])
def test_single_column_unique_not_null_key_of_a_composite_key_table_is_accepted(
    backend: Backend, api: httpx.Client, clean: None, identifier: str
) -> None:
    """``line_code`` has a UNIQUE constraint, ``ref`` a unique index: either identifies a row."""
    backend.import_config([stock_lines(identifier)])
    key = {"line_code": "L2", "ref": "20"}[identifier]
    one = api.get(f"{API}/cs-stock-lines/{key}")
    assert one.status_code == 200, one.text
    assert one.json()["data"]["sku"] == "y"
    changed = api.patch(f"{API}/cs-stock-lines/{key}", json={"data": {"qty": 99}})
    assert changed.status_code == 200, changed.text
    assert [r[-1] for r in rows(backend, "cs_stock_line", "ref")] == [1, 99, 3]
    backend.sql("UPDATE cs_stock_line SET qty = 2 WHERE ref = 20")


def test_the_primary_key_is_accepted(backend: Backend, api: httpx.Client, clean: None) -> None:
    backend.import_config([suppliers("id")])
    assert [item["code"] for item in api.get(f"{API}/cs-suppliers").json()["data"]] == ["S1", "S1", "S2"]


# --- views ----------------------------------------------------------------------------------------------------


def test_view_over_dx_user_is_refused(backend: Backend, clean: None) -> None:
    raw = view_entry("cs-users", "cs_user_view", ("id", "email", "password_hash"))
    assert refused(backend, [raw]) == [denied_view("cs-users", "cs_user_view", "dx_user")]


def test_view_over_a_view_over_dx_client_is_refused(backend: Backend, clean: None) -> None:
    problems = refused(backend, [view_entry("cs-clients", "cs_client_view2", ("id", "client_id", "secret_hash"))])
    assert problems == [denied_view("cs-clients", "cs_client_view2", "dx_client")]


def test_quoted_view_over_dx_user_is_refused(backend: Backend, clean: None) -> None:
    problems = refused(backend, [view_entry("cs-quoted", "cs_quoted_view", ("id", "email"))])
    assert problems == [denied_view("cs-quoted", "cs_quoted_view", "dx_user")]


def test_view_over_the_catalog_is_refused(backend: Backend, clean: None) -> None:
    problems = refused(backend, [view_entry("cs-catalog", "cs_catalog_view", ("id", "name"))])
    assert problems == [denied_view("cs-catalog", "cs_catalog_view", CATALOG_VIEW[backend.name][1])]


def test_view_over_a_configured_deny_listed_table_is_refused(backend: Backend, clean: None) -> None:
    problems = refused(backend, [view_entry("cs-secrets", "cs_secret_view", ("id", "token"))], deny=("CS_Secret",))
    assert problems == [denied_view("cs-secrets", "cs_secret_view", "cs_secret")]


def test_any_view_is_refused_for_want_of_a_key(backend: Backend, clean: None) -> None:
    problems = refused(backend, [suppliers("id", table="cs_supplier_view", alias="cs-supplier-view")])
    assert problems == [
        not_unique(
            "cs-supplier-view",
            "id",
            "cs_supplier_view",
            "`cs_supplier_view` is a view, and views declare no keys",
            "none",
        )
    ]


# --- stored behind dxapi's back -------------------------------------------------------------------------------


def test_unsafe_entities_stored_by_hand_are_unavailable_and_reported(
    backend: Backend, api: httpx.Client, clean: None, tmp_path: Path
) -> None:
    """Entities written straight into ``dx_entity``: never served, never writing, listed by ``config check``;
    every other entity keeps working, and other configuration changes can still be saved."""
    store_behind_dxapi(
        backend,
        [
            suppliers("code"),
            store_stock("store"),
            view_entry("cs-users", "cs_user_view", ("id", "email", "password_hash")),
            view_entry("cs-clients", "cs_client_view2", ("id", "client_id", "secret_hash")),
        ],
    )
    supplier_rows, stock_rows = rows(backend, "cs_supplier", "id"), rows(backend, "cs_store_stock", "store, sku")

    assert_unavailable(api.get(f"{API}/cs-suppliers"), "cs-suppliers")
    assert_unavailable(api.get(f"{API}/cs-suppliers/S1"), "cs-suppliers")
    assert_unavailable(api.patch(f"{API}/cs-suppliers/S1", json={"data": {"name": "changed"}}), "cs-suppliers")
    assert_unavailable(
        api.patch(f"{API}/cs-suppliers", json={"data": [{"code": "S1", "name": "changed"}]}), "cs-suppliers"
    )
    assert_unavailable(
        api.put(f"{API}/cs-suppliers/S1", json={"data": {"code": "S1", "name": "changed"}}), "cs-suppliers"
    )
    assert_unavailable(api.delete(f"{API}/cs-suppliers/S1"), "cs-suppliers")
    assert_unavailable(api.get(f"{API}/cs-store-stock"), "cs-store-stock")
    assert_unavailable(api.get(f"{API}/cs-store-stock/A"), "cs-store-stock")
    assert_unavailable(api.delete(f"{API}/cs-store-stock/A"), "cs-store-stock")
    assert_unavailable(api.delete(f"{API}/cs-store-stock?filter[store]=A"), "cs-store-stock")
    assert_unavailable(api.get(f"{API}/cs-users"), "cs-users")
    assert_unavailable(api.get(f"{API}/cs-users/1"), "cs-users")
    assert_unavailable(api.get(f"{API}/cs-clients"), "cs-clients")
    assert rows(backend, "cs_supplier", "id") == supplier_rows == [tuple(r) for r in SUPPLIERS]
    assert rows(backend, "cs_store_stock", "store, sku") == stock_rows == [tuple(r) for r in STORE_STOCK]
    countries = api.get(f"{API}/countries?page[limit]=2")
    assert countries.status_code == 200 and len(countries.json()["data"]) == 2, countries.text

    # An unrelated save is not blocked by entities that were stored unsafe before it.
    backend.import_config([entry("cs-secrets", "cs_secret", "id", [field("id", "integer"), field("token")])])
    assert api.get(f"{API}/cs-secrets").json() == {"data": []}

    check = run("config", "check", url=backend.url, cwd=tmp_path)
    assert check.code == 1, check
    assert "Traceback" not in check.err
    lines = {line.removeprefix("error: ") for line in (check.out + check.err).splitlines() if line.strip()}
    assert {
        not_unique("cs-suppliers", "code", "cs_supplier", NO_KEY, "id"),
        not_unique("cs-store-stock", "store", "cs_store_stock", COMPOSITE, "none"),
        denied_view("cs-users", "cs_user_view", "dx_user"),
        denied_view("cs-clients", "cs_client_view2", "dx_client"),
    } <= lines, lines
    assert not any("cs-secrets" in line for line in lines), lines
