"""Shared fixtures and helpers of the write-path tests (``test_write_rules``, ``test_write_batch``,
``test_write_fuzz``): private tables, their configuration, direct SQL, and strict response checks.

The write tests never touch the demo-shop tables other modules count and read. Each module gets its own
tables ``wt_parent``, ``wt_child`` and ``wt_keyed`` (created with portable SQLAlchemy Core DDL on every
backend) and the entities ``wt-parents``, ``wt-children`` and ``wt-keyed``, imported in Spryker's installer
format; both are removed again when the module ends. Every test starts from empty tables (:func:`wt`).

A module uses the fixtures by binding them to module names: ``write_env, wt = write_fixtures.write_env,
write_fixtures.wt`` (importing them by name would trip ruff's F811 at every use as an argument).

Bodies are serialised with the standard library (``json.dumps``) because it writes integers of any size and
escapes lone surrogates; hostile bodies are sent as raw bytes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi import errors
from dxapi.db import create_engine
from dxapi.registry.tables import dx_config_version
from tests.conftest import Backend, unconfigure

PREFIX = "/dynamic-entity"
PARENTS, CHILDREN, KEYED = "wt-parents", "wt-children", "wt-keyed"
FORBIDDEN_IN_BODY = (
    "Traceback",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "sqlalchemy",
    "asyncpg",
    "asyncmy",
    "aiosqlite",
    "IntegrityError",
)
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
PER_ITEM = {"X-Is-Transactional": "false"}


# --- tables ------------------------------------------------------------------------------------------------------


def wt_metadata() -> sa.MetaData:
    """The private tables: every column type the API maps, NOT NULL columns with and without defaults."""
    metadata = sa.MetaData()
    sa.Table(
        "wt_parent",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(10), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("price", sa.Numeric(8, 2), nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("born", sa.Date, nullable=True),
        sa.Column("seen_at", sa.DateTime, nullable=True),
        sa.Column("small", sa.SmallInteger, nullable=True),
        sa.Column("big", sa.BigInteger, nullable=True),
        sa.Column("rank", sa.Integer, nullable=True),
        sa.Column("ratio", sa.Double, nullable=True),
        sa.Column("notes", sa.Text, nullable=True),
        sa.Column("url", sa.String(200), nullable=True),
        sa.Column("status", sa.String(10), nullable=True),
        sa.Column("create_only", sa.String(20), nullable=True),
        sa.Column("edit_only", sa.String(20), nullable=True),
        sa.Column("readonly_col", sa.String(20), nullable=True, server_default="ro"),
        sa.Column("counter", sa.Integer, nullable=False, server_default="7"),
        sa.UniqueConstraint("code", name="uq_wt_parent_code"),
    )
    sa.Table(
        "wt_child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fk_parent", sa.Integer, sa.ForeignKey("wt_parent.id", name="fk_wt_child_parent"), nullable=False),
        sa.Column("label", sa.String(20), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False, server_default="0"),
    )
    sa.Table(
        "wt_keyed",
        metadata,
        sa.Column("code", sa.String(20), primary_key=True),
        sa.Column("title", sa.String(50), nullable=False),
        sa.Column("weight", sa.Integer, nullable=True),
    )
    return metadata


META = wt_metadata()
PARENT = META.tables["wt_parent"]
CHILD = META.tables["wt_child"]
KEYED_TABLE = META.tables["wt_keyed"]


def _field(
    column: str, visible: str, kind: str, *, creatable: bool = True, editable: bool = True, **validation: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "fieldName": column,
        "fieldVisibleName": visible,
        "type": kind,
        "isCreatable": creatable,
        "isEditable": editable,
    }
    if validation:
        entry["validation"] = validation
    return entry


PARENT_FIELDS: list[dict[str, Any]] = [
    _field("id", "id", "integer", creatable=False, editable=False),
    _field("code", "code", "string", isRequired=True, minLength=2, maxLength=10, pattern="^[A-Za-z0-9_-]+$"),
    _field("name", "name", "string", isRequired=True),  # the column's VARCHAR(50) is the only length limit
    _field("price", "price", "decimal", precision=8, scale=2, min=0),
    _field("active", "active", "boolean"),
    _field("born", "born", "date", min="1900-01-01"),
    _field("seen_at", "seenAt", "datetime"),
    _field("small", "small", "integer"),
    _field("big", "big", "integer"),
    _field("rank", "rank", "integer", min=1, max=100),
    _field("ratio", "ratio", "float"),
    _field("notes", "notes", "string"),
    _field("url", "url", "string", constraints=[{"name": "url"}]),
    _field("status", "status", "string", enum=["new", "done"]),
    _field("create_only", "createOnly", "string", editable=False),
    _field("edit_only", "editOnly", "string", creatable=False),
    _field("readonly_col", "readonlyCol", "string", creatable=False, editable=False),
    _field("counter", "counter", "integer"),
]
CHILD_FIELDS: list[dict[str, Any]] = [
    _field("id", "id", "integer", creatable=False, editable=False),
    _field("fk_parent", "fkParent", "integer", isRequired=True),
    _field("label", "label", "string", isRequired=True, maxLength=20),
    _field("qty", "qty", "integer", min=0),
]
KEYED_FIELDS: list[dict[str, Any]] = [
    _field("code", "code", "string", editable=False, maxLength=20),
    _field("title", "title", "string", isRequired=True),
    _field("weight", "weight", "integer"),
]


def _relation(name: str, editable: bool) -> dict[str, Any]:
    return {
        "name": name,
        "isEditable": editable,
        "childDynamicEntityConfiguration": {"tableAlias": CHILDREN},
        "relationFieldMappings": [{"childFieldName": "fk_parent", "parentFieldName": "id"}],
    }


WT_CONFIG: list[dict[str, Any]] = [
    {
        "tableName": "wt_child",
        "tableAlias": CHILDREN,
        "isActive": True,
        "definition": {"identifier": "id", "isDeletable": True, "fields": CHILD_FIELDS},
    },
    {
        "tableName": "wt_parent",
        "tableAlias": PARENTS,
        "isActive": True,
        "definition": {"identifier": "id", "isDeletable": True, "fields": PARENT_FIELDS},
        "childRelations": [_relation("children", True), _relation("childrenReadOnly", False)],
    },
    {
        "tableName": "wt_keyed",
        "tableAlias": KEYED,
        "isActive": True,
        "definition": {"identifier": "code", "isDeletable": False, "fields": KEYED_FIELDS},
    },
]
FIELDS = {PARENTS: PARENT_FIELDS, CHILDREN: CHILD_FIELDS, KEYED: KEYED_FIELDS}
TABLE_OF = {PARENTS: PARENT, CHILDREN: CHILD, KEYED: KEYED_TABLE}
PARENT_NAMES = [f["fieldVisibleName"] for f in PARENT_FIELDS]
CHILD_NAMES = [f["fieldVisibleName"] for f in CHILD_FIELDS]


# --- rendering: typed database row → the JSON object the API must answer -----------------------------------------


def render(alias: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row read with :data:`META` (column name → value) → the API object, configured keys in order."""
    item: dict[str, Any] = {}
    for f in FIELDS[alias]:
        value = row[f["fieldName"]]
        kind = f["type"]
        if value is None:
            rendered: Any = None
        elif kind == "decimal":
            rendered = format(Decimal(value), "f")
        elif kind == "boolean":
            rendered = bool(value)
        elif kind == "integer":
            rendered = int(value)
        elif kind == "float":
            rendered = float(value)
        elif kind in ("date", "datetime"):
            rendered = value.isoformat()
        else:
            rendered = value
        item[f["fieldVisibleName"]] = rendered
    return item


# --- the environment of one module on one backend ------------------------------------------------------------------


@dataclass
class WriteEnv:
    backend: Backend
    engine: AsyncEngine  # one engine for the module's direct SQL (cheaper than one per statement)

    @property
    def api(self) -> httpx.Client:
        return self.backend.client

    @property
    def name(self) -> str:
        return self.backend.name

    # direct SQL ---------------------------------------------------------------------------------------------------
    def sql(self, statement: sa.Executable, params: Any = None) -> list[sa.Row[Any]]:
        async def go() -> list[sa.Row[Any]]:
            async with self.engine.begin() as conn:
                result = await conn.execute(statement, params)
                return list(result.all()) if result.returns_rows else []

        rows: list[sa.Row[Any]] = self.backend.run(go())
        return rows

    def rows(self, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
        order = list(table.primary_key.columns)
        found = self.sql(sa.select(table).where(*where).order_by(*order))
        return [dict(r._mapping) for r in found]

    def row(self, table: sa.Table, key: Any) -> dict[str, Any] | None:
        pk = next(iter(table.primary_key.columns))
        found = self.rows(table, pk == key)
        return found[0] if found else None

    def count(self, table: sa.Table, *where: Any) -> int:
        return int(self.sql(sa.select(sa.func.count()).select_from(table).where(*where))[0][0])

    def dump(self) -> tuple[tuple[tuple[Any, ...], ...], ...]:
        """Every row of every private table, in key order: compare before/after for 'nothing written'."""
        out = []
        for table in (PARENT, CHILD, KEYED_TABLE):
            order = list(table.primary_key.columns)
            out.append(tuple(tuple(r) for r in self.sql(sa.select(table).order_by(*order))))
        return tuple(out)

    def clean(self) -> None:
        async def go() -> None:
            async with self.engine.begin() as conn:
                for table in (CHILD, PARENT, KEYED_TABLE):
                    await conn.execute(sa.delete(table))

        self.backend.run(go())

    def insert(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
        self.sql(sa.insert(table), [dict(r) for r in rows])

    def parent(self, code: str, name: str = "seeded", **values: Any) -> int:
        """Insert one parent row directly; return its id."""
        self.insert(PARENT, [{"code": code, "name": name, **values}])
        return int(self.sql(sa.select(PARENT.c.id).where(PARENT.c.code == code))[0][0])

    def parents(self, count: int, prefix: str = "S") -> list[int]:
        """Insert ``count`` parents (codes ``{prefix}0000`` …) directly; return their ids in code order."""
        self.insert(
            PARENT,
            [{"code": f"{prefix}{i:04d}", "name": f"seeded {i}", "price": Decimal("1.00")} for i in range(count)],
        )
        found = self.sql(sa.select(PARENT.c.id).where(PARENT.c.code.like(f"{prefix}%")).order_by(PARENT.c.code))
        return [int(r[0]) for r in found]

    def child(self, parent_id: int, label: str, qty: int = 0) -> int:
        self.insert(CHILD, [{"fk_parent": parent_id, "label": label, "qty": qty}])
        found = self.sql(
            sa.select(sa.func.max(CHILD.c.id)).where(CHILD.c.fk_parent == parent_id, CHILD.c.label == label)
        )
        return int(found[0][0])

    def missing_id(self) -> int:
        """An id no parent or child has (ids only grow)."""
        top = self.sql(sa.select(sa.func.max(PARENT.c.id)))[0][0] or 0
        top_child = self.sql(sa.select(sa.func.max(CHILD.c.id)))[0][0] or 0
        return int(max(top, top_child)) + 100_000

    # HTTP ---------------------------------------------------------------------------------------------------------
    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = "application/json",
        params: Any = None,
    ) -> httpx.Response:
        """Send ``body`` (serialised with ``json.dumps``) or ``raw`` bytes; never accept a 5xx or a leak."""
        content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Accept": "application/json", **(headers or {})}
        if content_type is not None:
            sent["Content-Type"] = content_type
        response = self.api.request(method, PREFIX + path, content=content, headers=sent, params=params)
        check_response(response, content)
        return response

    def post(self, alias: str, data: Any, **kw: Any) -> httpx.Response:
        return self.send("POST", f"/{alias}", {"data": data}, **kw)

    def patch(self, path: str, data: Any, **kw: Any) -> httpx.Response:
        return self.send("PATCH", f"/{path}", {"data": data}, **kw)

    def put(self, path: str, data: Any, **kw: Any) -> httpx.Response:
        return self.send("PUT", f"/{path}", {"data": data}, **kw)

    def get(self, path: str, params: Any = None) -> httpx.Response:
        response = self.api.get(PREFIX + path, params=params)
        check_response(response)
        return response


# --- response checks ------------------------------------------------------------------------------------------------


def check_response(response: httpx.Response, sent: bytes | None = None) -> None:
    """Never a 5xx, never internals in the body (unless the client sent that text itself: it may be echoed)."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:2000]}"
    for word in FORBIDDEN_IN_BODY:
        if sent is None or word.encode() not in sent:
            assert word not in response.text, f"response leaks `{word}`: {response.text[:1000]}"


def check_error_items(items: Any) -> list[dict[str, Any]]:
    """The one error item shape, every code from the catalogue with its catalogued status."""
    assert isinstance(items, list) and items, items
    for item in items:
        # An error answer's items name the request; a batch's per-item errors do not repeat it.
        assert isinstance(item, dict) and set(item) - {"requestId"} == {"code", "status", "message"}, item
        assert isinstance(item["code"], str) and item["code"] in errors.CATALOGUE, item
        assert type(item["status"]) is int and item["status"] == errors.CATALOGUE[item["code"]].status, item
        assert isinstance(item["message"], str) and item["message"], item
    return items


def error_list(response: httpx.Response, status: int) -> list[dict[str, Any]]:
    """Assert an error answer with ``status``; return its items (shape, catalogue and header checked)."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text[:2000]}"
    assert response.headers["content-type"] == "application/json", response.headers
    assert response.headers["cache-control"] == "no-store"
    items = check_error_items(response.json())
    assert response.headers["x-dxapi-error-code"] == items[0]["code"]
    assert items[0]["status"] == status, items
    return items


def expect_error(response: httpx.Response, status: int, code: str, *mentions: str, message: str | None = None) -> str:
    """Assert exactly one error ``code`` whose message contains every ``mentions`` (or equals ``message``)."""
    items = error_list(response, status)
    assert [i["code"] for i in items] == [code], items
    found: str = items[0]["message"]
    if message is not None:
        assert found == message, found
    for text in mentions:
        assert text in found, f"`{text}` not in {found!r}"
    return found


def expect_errors(response: httpx.Response, status: int, expected: Sequence[tuple[str, str]]) -> None:
    """Assert exactly these errors in this order: (code, fragment of its message) pairs."""
    items = error_list(response, status)
    assert [i["code"] for i in items] == [c for c, _ in expected], items
    for item, (_, text) in zip(items, expected, strict=True):
        assert text in item["message"], f"`{text}` not in {item['message']!r}"


def success(response: httpx.Response, status: int) -> Any:
    """Assert a success answer ``{"data": …}`` with ``status``; return ``data``."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text[:2000]}"
    assert response.headers["content-type"] == "application/json"
    assert "x-dxapi-error-code" not in response.headers
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["data"], body
    return body["data"]


def check_json_types(alias: str, item: Mapping[str, Any]) -> None:
    """Every configured field present, each with its JSON type (or null)."""
    expected = {f["fieldVisibleName"]: f["type"] for f in FIELDS[alias]}
    for name, kind in expected.items():
        assert name in item, f"`{name}` missing from {item}"
        value = item[name]
        if value is None:
            continue
        if kind == "integer":
            assert type(value) is int, (name, value)
        elif kind == "boolean":
            assert type(value) is bool, (name, value)
        elif kind == "float":
            assert type(value) in (int, float), (name, value)
        elif kind == "decimal":
            assert isinstance(value, str) and Decimal(value) == Decimal(value), (name, value)
        elif kind == "date":
            dt.date.fromisoformat(value)
        elif kind == "datetime":
            dt.datetime.fromisoformat(value)
        else:
            assert isinstance(value, str), (name, value)


# --- fixtures --------------------------------------------------------------------------------------------------------


async def _create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(META.drop_all)
        await conn.run_sync(META.create_all)


async def _drop_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(META.drop_all)


def _current_version(env: WriteEnv) -> int:
    return int(env.sql(sa.select(dx_config_version.c.version).where(dx_config_version.c.id == 1))[0][0])


@pytest.fixture(scope="module")
def write_env(backend: Backend) -> Iterator[WriteEnv]:
    """The private tables and entities, for one module on one backend; removed again afterwards."""
    engine = create_engine(backend.url)
    env = WriteEnv(backend, engine)
    try:
        backend.run(
            unconfigure(engine, [entry["tableAlias"] for entry in WT_CONFIG])
        )  # left over by an interrupted run
        backend.run(_create_tables(engine))
        backend.import_config(WT_CONFIG)
        yield env
    finally:
        backend.run(unconfigure(engine, [entry["tableAlias"] for entry in WT_CONFIG]))
        backend.wait_for_version(_current_version(env))
        backend.run(_drop_tables(engine))
        backend.run(engine.dispose())


@pytest.fixture
def wt(write_env: WriteEnv) -> WriteEnv:
    """A clean state for one test: the private tables empty."""
    write_env.clean()
    return write_env
