"""The OpenAPI document shows each principal what its scopes allow, and a generated client can use all of it.

* Scopes: a principal sees only the entities it holds a scope on, and only the operations of those scopes
  (read: GET; write: POST/PATCH/PUT; delete: DELETE); relations and ``include`` only towards entities it may
  read, nested bodies only towards entities it may write; a write-only principal's answers are identifiers.
  Documents are cached per snapshot and scope set: one principal's document never leaks into another's.
* A nested child body leaves the foreign key to the server (the child's own endpoint still requires it).
* An entity without any creatable or editable field gets no write operation.
* ``POST /token`` is described (form, Spryker's JSON and Glue's envelope; the token answer; OAuth errors).

Those run on every backend against the shared server. Then, on SQLite against a dedicated ``dxapi serve`` on
its own copy of the demo data, ``openapi-python-client`` generates a client from the live document (it must
not warn about any schema), and the test imports it and calls every operation kind through it: ``/token``,
list, get, create, nested create, batch and single PATCH and PUT, single and filtered DELETE — re-reading the
database afterwards.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from openapi_spec_validator import validate

from dxapi.auth.principals import add_client
from dxapi.registry.tables import dx_entity
from tests.conftest import Backend, fetch_token
from tests.reload.processes import API, ServerProcess, running, throwaway_database
from tests.reload.test_broken_config import bump_version

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
LEDGER_TABLE, LEDGER = "oa_ledger", "ledger"
LEDGER_CONFIG: dict[str, Any] = {
    "tableName": LEDGER_TABLE,
    "tableAlias": LEDGER,
    "isActive": True,
    "definition": {
        "identifier": "id",
        "isDeletable": False,
        "fields": [
            {"fieldName": name, "fieldVisibleName": name, "type": kind, "isCreatable": False, "isEditable": False}
            for name, kind in (("id", "integer"), ("note", "string"))
        ],
    },
}


def _document(client: httpx.Client, *, check: bool = True) -> dict[str, Any]:
    """The caller's document: fully validated (about a second each), or else with every ``$ref`` resolved."""
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200, response.text[:300]
    spec: dict[str, Any] = response.json()
    if check:
        validate(spec)
    else:
        _assert_refs_resolve(spec, spec)
    return spec


def _assert_refs_resolve(spec: dict[str, Any], node: Any) -> None:
    if isinstance(node, dict):
        if "$ref" in node:
            assert node["$ref"].rsplit("/", 1)[1] in spec["components"]["schemas"], node
        for value in node.values():
            _assert_refs_resolve(spec, value)
    elif isinstance(node, list):
        for value in node:
            _assert_refs_resolve(spec, value)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _operations(spec: dict[str, Any]) -> dict[str, set[str]]:
    """path → its HTTP methods."""
    return {path: set(item) - {"parameters"} for path, item in spec["paths"].items()}


@pytest.fixture
def scoped(backend: Backend) -> Iterator[Any]:
    """``scoped("products:read …")``: a client whose token carries just these scopes."""
    client_id, secret = backend.with_engine(
        lambda engine: add_client(engine, "openapi scopes", frozenset({"*:read", "*:write", "*:delete"}))
    )
    clients: list[httpx.Client] = []

    def make(scopes: str) -> httpx.Client:
        token = fetch_token(backend.base_url, client_id, secret, scope=scopes)
        clients.append(
            httpx.Client(base_url=backend.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        )
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def test_nested_child_leaves_the_foreign_key_to_the_server(api: httpx.Client) -> None:
    spec = _document(api)
    schemas = spec["components"]["schemas"]
    assert "fkProduct" in schemas["stocks-create"]["required"]  # the child's own endpoint needs it
    for mode in ("create", "replace"):
        nested = _resolve(spec, schemas[f"products-{mode}"]["properties"]["productStocks"]["items"])
        assert "fkProduct" not in nested.get("required", []) and "fkProduct" not in nested["properties"], nested
        assert "warehouse" in nested["required"], nested
        assert nested["additionalProperties"] is False
    # A nested PATCH names existing children by their identifier, like the child's own batch PATCH.
    update = _resolve(spec, schemas["products-update"]["properties"]["productStocks"]["items"])
    assert update["required"] == ["idStock"], update


@pytest.fixture
def ledger(backend: Backend) -> Iterator[None]:
    """A table whose every field is read-only (like a view): configured, then removed."""
    metadata = sa.MetaData()
    table = sa.Table(
        LEDGER_TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("note", sa.String(40), nullable=True),
    )

    async def create(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            await conn.execute(table.insert(), [{"id": 1, "note": "opening balance"}])

    async def drop(engine: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.delete(dx_entity).where(dx_entity.c.table_alias == LEDGER))
            await conn.run_sync(metadata.drop_all)

    backend.with_engine(create)
    try:
        backend.import_config([LEDGER_CONFIG])
        yield
    finally:
        backend.with_engine(drop)
        bump_version(backend)


def test_read_only_entity_gets_no_write_operation(api: httpx.Client, ledger: None) -> None:
    spec = _document(api)
    operations = _operations(spec)
    assert operations[f"{API}/{LEDGER}"] == {"get"}, operations[f"{API}/{LEDGER}"]
    assert operations[f"{API}/{LEDGER}/{{id}}"] == {"get"}, operations[f"{API}/{LEDGER}/{{id}}"]
    assert not [name for name in spec["components"]["schemas"] if name.startswith(f"{LEDGER}-")]
    assert api.get(f"{API}/{LEDGER}/1").json()["data"] == {"id": 1, "note": "opening balance"}


def test_token_endpoint_is_described(backend: Backend, api: httpx.Client) -> None:
    spec = _document(api)
    operation = spec["paths"]["/token"]["post"]
    assert operation["security"] == [], operation  # no credentials needed to ask for a token
    content = operation["requestBody"]["content"]
    form = _resolve(spec, content["application/x-www-form-urlencoded"]["schema"])
    assert form["required"] == ["grant_type"], form
    assert {"client_credentials", "refresh_token"} <= set(form["properties"]["grant_type"]["enum"]), form
    assert {"client_id", "client_secret", "scope", "refresh_token"} <= set(form["properties"]), form
    assert "application/json" in content, content
    answer = _resolve(spec, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"access_token", "token_type", "expires_in"} <= set(answer["required"]), answer
    failure = _resolve(spec, operation["responses"]["401"]["content"]["application/json"]["schema"])
    assert failure["required"] == ["error"], failure

    client_id, secret = backend.with_engine(lambda engine: add_client(engine, "openapi token", frozenset()))
    issued = httpx.post(
        f"{backend.base_url}/token",
        timeout=10,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert issued.status_code == 200 and set(answer["required"]) <= set(issued.json()), issued.text
    assert set(issued.json()) <= set(answer["properties"]), issued.text
    refused = httpx.post(
        f"{backend.base_url}/token",
        timeout=10,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"},
    )
    assert refused.status_code == 401 and set(refused.json()) <= set(failure["properties"]), refused.text


def test_document_shows_only_what_the_scopes_allow(backend: Backend, api: httpx.Client, scoped: Any) -> None:
    full = _document(api)
    reader = _document(scoped("products:read"), check=False)
    operations = _operations(reader)
    assert operations == {f"{API}/products": {"get"}, f"{API}/products/{{id}}": {"get"}, "/token": {"post"}}, operations
    schemas = reader["components"]["schemas"]
    assert not {"countries", "stocks", "tax-rates", "products-create"} & set(schemas), sorted(schemas)
    assert not {"productStocks", "productTaxRate"} & set(schemas["products"]["properties"])
    parameters = {p["name"] for p in reader["paths"][f"{API}/products"]["get"]["parameters"]}
    assert "include" not in parameters and "filter[products.sku]" in parameters, parameters

    with_stocks = _document(scoped("products:read stocks:read"), check=False)
    include = next(p for p in with_stocks["paths"][f"{API}/products"]["get"]["parameters"] if p["name"] == "include")
    assert "productStocks" in include["description"] and "productTaxRate" not in include["description"], include
    assert with_stocks["components"]["schemas"]["products"]["properties"]["productStocks"]["items"] == {
        "$ref": "#/components/schemas/stocks"
    }

    writer_client = scoped("products:write")
    writer = _document(writer_client)
    assert _operations(writer) == {
        f"{API}/products": {"post", "patch", "put"},
        f"{API}/products/{{id}}": {"patch", "put"},
        "/token": {"post"},
    }
    schemas = writer["components"]["schemas"]
    assert "products" not in schemas and "productStocks" not in schemas["products-create"]["properties"]
    saved = writer["paths"][f"{API}/products/{{id}}"]["patch"]["responses"]["200"]["content"]["application/json"]
    item = _resolve(writer, _resolve(writer, saved["schema"])["properties"]["data"])
    assert item["required"] == ["idProduct"] and set(item["properties"]) == {"idProduct"}, item
    # ... which is what the server answers a write-only principal.
    name = api.get(f"{API}/products/1").json()["data"]["name"]
    answer = writer_client.patch(f"{API}/products/1", json={"data": {"name": name}})
    assert answer.status_code == 200 and answer.json()["data"] == {"idProduct": 1}, answer.text

    nested = _document(scoped("products:write stocks:write"), check=False)
    assert "productStocks" in nested["components"]["schemas"]["products-create"]["properties"]

    deleter = _document(scoped("stocks:delete"), check=False)
    assert _operations(deleter) == {f"{API}/stocks": {"delete"}, f"{API}/stocks/{{id}}": {"delete"}, "/token": {"post"}}
    assert not [n for n in deleter["components"]["schemas"] if n.startswith(("stocks", "products"))]

    # Each scope set has its own cached document; the full one is unchanged by the others.
    assert _document(api, check=False) == full
    assert _document(scoped("products:read"), check=False) == reader
    assert f"{API}/countries" in full["paths"] and "stocks-create" in full["components"]["schemas"]


# --- a generated client against a live server -------------------------------------------------------------------


def _generate(spec_path: Path, out: Path) -> str:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec_path), "--output-path", str(out), "--meta", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=spec_path.parent,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Any]:
    """Import a generated package from ``tmp_path`` by name; forgotten again afterwards."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m == "dxclient" or m.startswith("dxclient.")]:
            del sys.modules[module]


@pytest.mark.timeout(120)
def test_generated_client_sends_every_request(loop: asyncio.AbstractEventLoop, tmp_path: Path, generated: Any) -> None:
    with throwaway_database("sqlite", loop, tmp_path) as database:
        server = ServerProcess("client", database.url, secrets.token_urlsafe(48), tmp_path)
        with running([server]):
            token = server.token(database)
            spec = httpx.get(
                f"{server.base_url}{API}/openapi.json", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            assert spec.status_code == 200, spec.text[:300]
            (tmp_path / "openapi.json").write_bytes(spec.content)
            output = _generate(tmp_path / "openapi.json", tmp_path / "dxclient")
            warnings = [
                line
                for line in output.splitlines()
                if line.strip() and not line.startswith(("Generating", "If you believe"))
            ]
            assert not warnings, output
            _exercise(generated, server.base_url, database.client_id, database.client_secret)
            engine = sa.create_engine(database.url)
            try:
                with engine.connect() as conn:
                    left = conn.execute(sa.text("SELECT COUNT(*) FROM shop_product WHERE sku LIKE 'GEN-%'")).scalar()
                    stocks = conn.execute(sa.text("SELECT COUNT(*) FROM shop_stock WHERE warehouse = 'GEN'")).scalar()
            finally:
                engine.dispose()
            assert (left, stocks) == (0, 0)
            assert not server.logged_errors(), server.log_tail()


def _exercise(generated: Any, base_url: str, client_id: str, client_secret: str) -> None:
    client_module = generated("dxclient")
    models = generated("dxclient.models")
    api = "dxclient.api"

    def call(tag: str, operation: str, **kwargs: Any) -> Any:
        return generated(f"{api}.{tag}.{operation}").sync_detailed(**kwargs)

    anonymous = client_module.Client(base_url=base_url)
    issued = call(
        "auth",
        "token",
        client=anonymous,
        body=models.TokenForm(
            grant_type=models.TokenFormGrantType.CLIENT_CREDENTIALS, client_id=client_id, client_secret=client_secret
        ),
    )
    assert issued.status_code == 200, issued.content
    access = issued.parsed.access_token
    refused = call(
        "auth",
        "token",
        client=anonymous,
        body=models.TokenForm(
            grant_type=models.TokenFormGrantType.CLIENT_CREDENTIALS, client_id=client_id, client_secret="wrong"
        ),
    )
    assert refused.status_code == 401 and refused.parsed.error == "invalid_client", refused.content
    flat = models.TokenJson(
        grant_type=models.TokenJsonGrantType.CLIENT_CREDENTIALS, client_id=client_id, client_secret=client_secret
    )
    glue = models.TokenGlue(data=models.TokenGlueData(attributes=flat, type_=models.TokenGlueDataType.TOKEN))
    for body in (flat, glue):  # Spryker's JSON bodies
        answer = call("auth", "token", client=anonymous, body=body)
        assert answer.status_code == 200 and answer.parsed.token_type == "Bearer", answer.content
    client = client_module.AuthenticatedClient(base_url=base_url, token=access)

    listed = call("products", "list_products", client=client, pagelimit=2, include="productStocks")
    assert listed.status_code == 200, listed.content
    assert [p.id_product for p in listed.parsed.data] == [1, 2]
    assert isinstance(listed.parsed.data[0].product_stocks, list)
    one = call("products", "get_products", client=client, id=1)
    assert one.status_code == 200 and one.parsed.data.id_product == 1, one.content

    created = call(
        "products",
        "create_products",
        client=client,
        body=models.CreateProductsBody(
            data=[
                models.ProductsCreate(sku="GEN-1", name="generated one", fk_category=1, price="9.50"),
                models.ProductsCreate(
                    sku="GEN-2",
                    name="generated two",
                    fk_category=1,
                    price=3,
                    product_stocks=[
                        models.ProductsProductStocksCreate(warehouse="GEN", quantity=4),
                    ],
                ),
            ]
        ),
    )
    assert created.status_code == 201, created.content
    first, second = created.parsed.data
    assert first.sku == "GEN-1" and first.price == "9.50", first
    (stock,) = second.product_stocks
    assert stock.fk_product == second.id_product and stock.quantity == 4, stock

    patched = call(
        "products",
        "update_products",
        client=client,
        body=models.UpdateProductsBody(
            data=[
                models.ProductsUpdate(id_product=first.id_product, name="patched in batch"),
            ]
        ),
    )
    assert patched.status_code == 200 and patched.parsed.data[0].name == "patched in batch", patched.content
    patched_one = call(
        "products",
        "update_one_products",
        client=client,
        id=first.id_product,
        body=models.UpdateOneProductsBody(data=models.ProductsUpdateOne(description="patched")),
    )
    assert patched_one.status_code == 200 and patched_one.parsed.data.description == "patched", patched_one.content
    put_one = call(
        "products",
        "upsert_one_products",
        client=client,
        id=first.id_product,
        body=models.UpsertOneProductsBody(
            data=models.ProductsReplace(sku="GEN-1", name="replaced", fk_category=2, price="1.25", is_active=True)
        ),
    )
    assert put_one.status_code == 200, put_one.content
    assert (put_one.parsed.data.name, put_one.parsed.data.description) == ("replaced", None), put_one.content
    put_batch = call(
        "products",
        "upsert_products",
        client=client,
        body=models.UpsertProductsBody(
            data=[
                models.ProductsReplace(
                    id_product=second.id_product,
                    sku="GEN-2",
                    name="upserted",
                    fk_category=1,
                    price="2.00",
                    is_active=False,
                ),
            ]
        ),
    )
    assert put_batch.status_code == 200 and put_batch.parsed.data[0].name == "upserted", put_batch.content
    stock_patch = call(
        "stocks",
        "update_one_stocks",
        client=client,
        id=stock.id_stock,
        body=models.UpdateOneStocksBody(data=models.StocksUpdateOne(quantity=5)),
    )
    assert stock_patch.status_code == 200 and stock_patch.parsed.data.quantity == 5, stock_patch.content

    gone = call("stocks", "delete_one_stocks", client=client, id=stock.id_stock)
    assert gone.status_code == 204, gone.content
    gone = call("products", "delete_one_products", client=client, id=first.id_product)
    assert gone.status_code == 204, gone.content
    gone = call("products", "delete_products", client=client, filterproducts_sku='{"in":["GEN-2"]}')
    assert gone.status_code == 204, gone.content
    missing = call("products", "get_products", client=client, id=second.id_product)
    assert missing.status_code == 404, missing.content
