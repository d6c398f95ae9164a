"""Test harness: real databases, the real app, real HTTP.

``DXAPI_TEST_BACKENDS`` (default ``sqlite,postgresql,mysql``) lists the backends every ``api`` test runs on. A
listed backend that cannot be reached **fails** the run — never a silent skip. For each backend a fresh,
throw-away database is created (``dxapi_test_<random>`` on the servers, a temp file for SQLite), filled with
the demo shop plus tables with awkward names, configured from ``examples/shop-config.json`` and served by
uvicorn on a free loopback port in a background thread. Tests talk to it with ``httpx`` over TCP.

Server URLs: ``DXAPI_TEST_POSTGRESQL_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``) and
``DXAPI_TEST_MYSQL_URL`` (default ``mysql://root@127.0.0.1:3306/test``) name an existing database used only to
create and drop the throw-away ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
import uvicorn
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from dxapi.app import create_app
from dxapi.auth.principals import add_client
from dxapi.db import create_engine
from dxapi.demo import build_shop
from dxapi.registry.store import ensure_schema, parse_import, save_entities
from dxapi.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHOP_CONFIG = ROOT / "examples" / "shop-config.json"
PRODUCTS = 300
ALL_SCOPES = frozenset({"*:read", "*:write", "*:delete"})

SERVER_URLS = {
    "postgresql": os.environ.get("DXAPI_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("DXAPI_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
BACKENDS = [b.strip() for b in os.environ.get("DXAPI_TEST_BACKENDS", "sqlite,postgresql,mysql").split(",") if b]


def awkward_metadata() -> sa.MetaData:
    """Tables whose names need quoting everywhere: a reserved word, mixed case with spaces."""
    metadata = sa.MetaData()
    sa.Table(
        "order",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("select", sa.String(50), nullable=False),
        sa.Column("group", sa.Integer, nullable=True),
    )
    sa.Table(
        "Mixed Case Table",
        metadata,
        sa.Column("Code", sa.String(20), primary_key=True),
        sa.Column("Display Name", sa.String(100), nullable=False),
        sa.Column("Weight", sa.Numeric(10, 3), nullable=True),
    )
    sa.Table(
        "parked",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("note", sa.String(50), nullable=True),
    )
    return metadata


AWKWARD_ROWS = {
    "order": [{"id": i, "select": f"pick {i}", "group": i % 3 or None} for i in range(1, 8)],
    "Mixed Case Table": [
        {"Code": "A-1", "Display Name": "First", "Weight": "1.250"},
        {"Code": "b 2", "Display Name": "Second", "Weight": None},
        {"Code": "C/3", "Display Name": "Third", "Weight": "0.001"},
    ],
    "parked": [{"id": 1, "note": "never served"}],
}

AWKWARD_CONFIG: list[dict[str, Any]] = [
    {
        "tableName": "order",
        "tableAlias": "orders",
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": False,
            "fields": [
                {
                    "fieldName": "id",
                    "fieldVisibleName": "id",
                    "type": "integer",
                    "isCreatable": True,
                    "isEditable": False,
                },
                {
                    "fieldName": "select",
                    "fieldVisibleName": "select",
                    "type": "string",
                    "isCreatable": True,
                    "isEditable": True,
                    "validation": {"isRequired": True, "maxLength": 50},
                },
                {
                    "fieldName": "group",
                    "fieldVisibleName": "group",
                    "type": "integer",
                    "isCreatable": True,
                    "isEditable": True,
                },
            ],
        },
    },
    {
        "tableName": "Mixed Case Table",
        "tableAlias": "MixedCase",
        "isActive": True,
        "definition": {
            "identifier": "Code",
            "isDeletable": False,
            "fields": [
                {
                    "fieldName": "Code",
                    "fieldVisibleName": "code",
                    "type": "string",
                    "isCreatable": True,
                    "isEditable": False,
                },
                {
                    "fieldName": "Display Name",
                    "fieldVisibleName": "displayName",
                    "type": "string",
                    "isCreatable": True,
                    "isEditable": True,
                },
                {
                    "fieldName": "Weight",
                    "fieldVisibleName": "weight",
                    "type": "decimal",
                    "isCreatable": True,
                    "isEditable": True,
                    "validation": {"precision": 10, "scale": 3},
                },
            ],
        },
    },
    {  # configured but switched off: must answer exactly like an unknown alias
        "tableName": "parked",
        "tableAlias": "parked",
        "isActive": False,
        "definition": {
            "identifier": "id",
            "fields": [
                {
                    "fieldName": "id",
                    "fieldVisibleName": "id",
                    "type": "integer",
                    "isCreatable": False,
                    "isEditable": False,
                },
            ],
        },
    },
]


def shop_config() -> list[dict[str, Any]]:
    document: list[dict[str, Any]] = orjson.loads(SHOP_CONFIG.read_bytes())
    return document


@dataclass
class Backend:
    name: str
    url: str
    settings: Settings
    base_url: str
    client: httpx.Client
    run: Callable[[Any], Any]  # run a coroutine on the test's own loop (store helpers, direct SQL)

    def sql(self, statement: str | sa.Executable, **params: Any) -> list[sa.Row[Any]]:
        """Run SQL directly against the backend (to set up or check state behind the API)."""

        async def go() -> list[sa.Row[Any]]:
            engine = create_engine(self.url)
            try:
                async with engine.begin() as conn:
                    stmt = sa.text(statement) if isinstance(statement, str) else statement
                    result = await conn.execute(stmt, params)
                    return list(result.all()) if result.returns_rows else []
            finally:
                await engine.dispose()

        rows: list[sa.Row[Any]] = self.run(go())
        return rows

    def with_engine(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(engine)`` on the test's event loop with a throw-away engine on this database."""

        async def go() -> Any:
            engine = create_engine(self.url)
            try:
                return await work(engine)
            finally:
                await engine.dispose()

        return self.run(go())

    def import_config(self, entries: list[dict[str, Any]]) -> int:
        async def go() -> int:
            engine = create_engine(self.url)
            try:
                return await save_entities(engine, parse_import(entries), actor="test", action="import")
            finally:
                await engine.dispose()

        version: int = self.run(go())
        self.wait_for_version(version)
        return version

    def wait_for_version(self, version: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.client.get("/health/ready").json()
            if ready["snapshotVersion"] >= version:
                return
            time.sleep(0.05)
        raise AssertionError(f"server did not load configuration version {version} within {timeout}s")


async def unconfigure(engine: Any, aliases: Sequence[str] = (), *, alias_like: str | None = None) -> int:
    """Remove entities (by alias, or by a LIKE pattern on the alias) and every relation touching them straight in
    the dx tables, as an operator's SQL would, and bump the configuration version; → the new version."""
    from dxapi.registry.tables import dx_config_version, dx_entity, dx_relation

    chosen = dx_entity.c.table_alias.like(alias_like) if alias_like else dx_entity.c.table_alias.in_(list(aliases))
    async with engine.begin() as conn:
        ids = list((await conn.execute(sa.select(dx_entity.c.id).where(chosen))).scalars())
        if ids:
            touching = dx_relation.c.parent_entity_id.in_(ids) | dx_relation.c.child_entity_id.in_(ids)
            await conn.execute(sa.delete(dx_relation).where(touching))
            await conn.execute(sa.delete(dx_entity).where(dx_entity.c.id.in_(ids)))
        await conn.execute(
            sa.update(dx_config_version)
            .where(dx_config_version.c.id == 1)
            .values(version=dx_config_version.c.version + 1)
        )
        return int((await conn.execute(sa.select(dx_config_version.c.version))).scalar_one())


def config_field(name: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    """One field of an installer-format definition, visible under its column name, creatable and editable
    unless ``extra`` (any installer key: ``isEditable``, ``validation``, ``autoValue`` …) says otherwise."""
    return {"fieldName": name, "fieldVisibleName": name, "type": kind, "isCreatable": True, "isEditable": True} | extra


@contextlib.contextmanager
def serving(backend: Backend, metadata: sa.MetaData, config: list[dict[str, Any]]) -> Iterator[None]:
    """Fresh tables of ``metadata``, configured by ``config`` and served while the block runs; the entities and
    tables are removed afterwards (and the server has seen that) whatever happened."""
    aliases = [entry["tableAlias"] for entry in config]

    async def create(engine: Any) -> None:
        await unconfigure(engine, aliases)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)

    async def drop(engine: Any) -> int:
        version = await unconfigure(engine, aliases)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        return version

    backend.with_engine(create)
    try:
        backend.import_config(config)
        yield
    finally:
        backend.wait_for_version(backend.with_engine(drop))


def fetch_token(base_url: str, client_id: str, client_secret: str, scope: str | None = None) -> str:
    """An access token by the client-credentials grant, as a connector gets one."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
    if scope is not None:
        form["scope"] = scope
    response = httpx.post(f"{base_url}/token", data=form, timeout=30)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


class _ServerErrors(logging.Handler):
    """Every ERROR the in-process servers log (dxapi's own, uvicorn's "Exception in ASGI application").

    A server that logged an error answered 500 somewhere or failed after a commit; the test during which it
    happened fails (``_no_server_errors``), whatever its own assertions said.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("dxapi", "uvicorn")):
            self.records.append(record)

    def take(self) -> list[str]:
        taken, self.records = self.records, []
        return [f"{r.name}: {r.getMessage()}" + (f" ({r.exc_info[1]!r})" if r.exc_info else "") for r in taken]


SERVER_ERRORS = _ServerErrors()
logging.getLogger().addHandler(SERVER_ERRORS)


@pytest.fixture(autouse=True)
def _no_server_errors() -> Iterator[None]:
    before = SERVER_ERRORS.take()
    if before:  # logged between tests (a server thread finishing late): still a failure, named as such
        pytest.fail("server logged errors before this test started:\n" + "\n".join(before), pytrace=False)
    yield
    found = SERVER_ERRORS.take()
    if found:
        pytest.fail("server logged errors during this test:\n" + "\n".join(found), pytrace=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _create_database(backend: str) -> str:
    """Create a throw-away database on the server; return its URL. Fails loudly if unreachable."""
    server_url = make_url(SERVER_URLS[backend])
    name = f"dxapi_test_{secrets.token_hex(4)}"
    admin = create_engine(server_url)
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        pytest.fail(
            f"backend `{backend}` listed in DXAPI_TEST_BACKENDS is not reachable at "
            f"{server_url.render_as_string(hide_password=True)}: {type(exc).__name__}: {exc}",
            pytrace=False,
        )
    finally:
        await admin.dispose()
    return server_url.set(database=name).render_as_string(hide_password=False)


async def _drop_database(backend: str, url: str) -> None:
    admin = create_engine(SERVER_URLS[backend])
    name = make_url(url).database
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if backend == "postgresql":
                await conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                await conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    finally:
        await admin.dispose()


async def _prepare(url: str) -> tuple[str, str]:
    """Build and configure the database; return (client_id, secret) of a client allowed everything."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(build_shop, PRODUCTS, 7)
            metadata = awkward_metadata()
            await conn.run_sync(metadata.create_all)
            for name, rows in AWKWARD_ROWS.items():
                await conn.execute(metadata.tables[name].insert(), rows)
        await ensure_schema(engine)
        entries = shop_config() + AWKWARD_CONFIG
        await save_entities(engine, parse_import(entries), actor="test", action="import")
        return await add_client(engine, "test suite", ALL_SCOPES)
    finally:
        await engine.dispose()


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process owns the signals
        pass


@pytest.fixture(scope="session")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def _start_server(settings: Settings) -> tuple[_Server, threading.Thread, str]:
    port = _free_port()
    # log_config=None: uvicorn keeps its hands off logging, so its error records reach SERVER_ERRORS.
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on", log_config=None
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    name: str = request.param
    if name == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'shop.db'}"
    elif name in SERVER_URLS:
        url = loop.run_until_complete(_create_database(name))
    else:
        pytest.fail(f"unknown backend `{name}` in DXAPI_TEST_BACKENDS (use sqlite, postgresql, mysql)")
    try:
        client_id, client_secret = loop.run_until_complete(_prepare(url))
        settings = Settings(
            database_url=url,
            reload_interval=0.05,
            default_page_limit=100,
            max_page_limit=500,
            jwt_secret=SecretStr(secrets.token_urlsafe(48)),
            token_attempts_per_minute=1000,
            token_attempts_per_address=1000,
        )
        server, thread, base_url = _start_server(settings)
        token = fetch_token(base_url, client_id, client_secret)
        with httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            yield Backend(name, url, settings, base_url, client, loop.run_until_complete)
        server.should_exit = True
        thread.join(timeout=10)
    finally:
        if name in SERVER_URLS:
            loop.run_until_complete(_drop_database(name, url))


def only_on(name: str) -> pytest.MarkDecorator:
    """Run a test on one backend: for a case only that backend can produce (SQLite keeping any text in a
    DATETIME column, say). It is not collected for the others, so a run never reports it as skipped."""
    return pytest.mark.parametrize("backend", [name], indirect=True)


@pytest.fixture
def api(backend: Backend) -> httpx.Client:
    return backend.client
