"""Scopes per entity and action (DESIGN §5; security-and-reliability §7 T11, T15) on every backend.

A principal only reads and touches what its scopes allow — directly, through ``include`` (every entity the
chain reaches), and through nested writes (every child entity). A refused request answers 403 with the
catalogue error ``4003`` and writes nothing (tables fingerprinted before and after). The ``scope`` parameter of
``/token`` narrows a token; asking for more than the client has is ``invalid_scope``.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.auth.conftest import (
    API,
    assert_forbidden,
    assert_oauth_error,
    bearer,
    client_token,
    fingerprint,
    new_client,
    on_one_backend,
)
from tests.conftest import Backend

Scoped = Callable[[str], httpx.Client]
NEW_PRODUCT = {"sku": "SEC-SCOPE-1", "name": "Scope probe", "fkCategory": 1, "price": "1.00"}
PRODUCT_WRITES = [
    ("POST", f"{API}/products", {"data": [NEW_PRODUCT]}, None),
    ("PATCH", f"{API}/products", {"data": [{"idProduct": 1, "name": "Hacked"}]}, None),
    ("PATCH", f"{API}/products/1", {"data": {"name": "Hacked"}}, None),
    ("PUT", f"{API}/products", {"data": [{"idProduct": 1, **NEW_PRODUCT}]}, None),
    ("PUT", f"{API}/products/1", {"data": NEW_PRODUCT}, None),
    ("DELETE", f"{API}/products/1", None, None),
    ("DELETE", f"{API}/products", None, {"filter[products.idProduct]": "1"}),
]
COUNTRY_WITH_RATES = {
    "iso2Code": "QZ",
    "iso3Code": "QZQ",
    "name": "Scopeland",
    "countryTaxRates": [{"name": "Standard", "rate": "19.00"}, {"name": "Reduced", "rate": "7.00"}],
}
COUNTRY_TABLES = ("shop_country", "shop_tax_rate")


def _refuses_all_writes(client: httpx.Client, backend: Backend) -> None:
    before = fingerprint(backend, "shop_product", "shop_stock")
    failures = []
    for method, path, body, params in PRODUCT_WRITES:
        response = client.request(method, path, json=body, params=params)
        try:
            assert_forbidden(response)
        except AssertionError as exc:
            failures.append(f"{method} {path}: {exc}")
    assert not failures, "\n".join(failures)
    assert fingerprint(backend, "shop_product", "shop_stock") == before, "a refused write changed a row"


def test_read_scope_reads_list_and_item(scoped: Scoped) -> None:
    client = scoped("products:read")
    listed = client.get(f"{API}/products", params={"page[limit]": "5"})
    assert listed.status_code == 200, listed.text
    assert [p["idProduct"] for p in listed.json()["data"]] == [1, 2, 3, 4, 5]
    one = client.get(f"{API}/products/2")
    assert one.status_code == 200, one.text
    assert one.json()["data"]["idProduct"] == 2


def test_read_scope_writes_nothing(scoped: Scoped, backend: Backend) -> None:
    _refuses_all_writes(scoped("products:read"), backend)


def test_read_scope_stays_on_its_entity(scoped: Scoped) -> None:
    client = scoped("products:read")
    for path in (f"{API}/tax-rates", f"{API}/tax-rates/1", f"{API}/categories", f"{API}/stocks/1"):
        assert_forbidden(client.get(path))


@pytest.mark.parametrize(
    ("scopes", "path", "include", "enough"),
    [
        ("products:read", "products", "productTaxRate", "products:read tax-rates:read"),
        ("products:read", "products/1", "productTaxRate", "products:read tax-rates:read"),
        ("products:read", "products", "productStocks", "products:read stocks:read"),
        ("categories:read", "categories", "categoryProducts", "categories:read products:read"),
        ("categories:read", "categories/1", "categoryProducts", "categories:read products:read"),
        # a chain: every entity it reaches needs its scope, not only the first hop
        (
            "categories:read products:read",
            "categories",
            "categoryProducts.productTaxRate",
            "categories:read products:read tax-rates:read",
        ),
    ],
)
def test_include_needs_the_scope_of_every_included_entity(
    scoped: Scoped, scopes: str, path: str, include: str, enough: str
) -> None:
    params = {"include": include}
    if "/" not in path:
        params["page[limit]"] = "3"
    response = scoped(scopes).get(f"{API}/{path}", params=params)
    assert_forbidden(response)
    assert "data" not in response.text  # nothing of the root entity either: refused as a whole
    allowed = scoped(enough).get(f"{API}/{path}", params=params)  # control: same request, enough scopes
    assert allowed.status_code == 200, allowed.text


@on_one_backend()
@pytest.mark.parametrize(
    "params",
    [
        {"filter[products.noSuchField]": "1"},
        {"include": "noSuchRelation"},
        {"sort": "noSuchField"},
        {"filter[products.sku]": "X"},
        {"page[limit]": "999999"},
    ],
    ids=["unknown-filter-field", "unknown-relation", "unknown-sort-field", "known-filter-field", "huge-page"],
)
def test_out_of_scope_entity_is_refused_whatever_the_request(scoped: Scoped, params: dict[str, str]) -> None:
    """Without ``products:read`` every request on products is the same 403: no field or relation name oracle
    (1313/1315 vs 403 would tell a principal which fields and relations an entity it may not read has)."""
    response = scoped("countries:read").get(f"{API}/products", params=params)
    assert_forbidden(response)


def test_wildcard_read_reads_everything_and_writes_nothing(scoped: Scoped, backend: Backend) -> None:
    client = scoped("*:read")
    for alias in ("countries", "tax-rates", "categories", "products", "stocks", "orders", "MixedCase"):
        response = client.get(f"{API}/{alias}", params={"page[limit]": "2"})
        assert response.status_code == 200, (alias, response.text)
    deep = client.get(f"{API}/categories", params={"include": "categoryProducts.productTaxRate", "page[limit]": "2"})
    assert deep.status_code == 200, deep.text
    _refuses_all_writes(client, backend)
    before = fingerprint(backend, *COUNTRY_TABLES)
    assert_forbidden(client.post(f"{API}/countries", json={"data": [COUNTRY_WITH_RATES]}))
    assert fingerprint(backend, *COUNTRY_TABLES) == before


def test_write_scope_is_neither_read_nor_delete(scoped: Scoped, backend: Backend) -> None:
    client = scoped("products:write")
    assert_forbidden(client.get(f"{API}/products/1"))
    assert_forbidden(client.get(f"{API}/products"))
    before = fingerprint(backend, "shop_product", "shop_stock")
    assert_forbidden(client.delete(f"{API}/products/1"))
    assert_forbidden(client.delete(f"{API}/products", params={"filter[products.idProduct]": "1"}))
    assert fingerprint(backend, "shop_product", "shop_stock") == before


@pytest.mark.parametrize("transactional", ["true", "false"])
def test_nested_write_without_child_scope_refuses_everything(
    scoped: Scoped, backend: Backend, transactional: str
) -> None:
    client = scoped("countries:write")
    headers = {"X-Is-Transactional": transactional}
    before = fingerprint(backend, *COUNTRY_TABLES)
    created = client.post(f"{API}/countries", json={"data": [COUNTRY_WITH_RATES]}, headers=headers)
    assert_forbidden(created)
    child = {"countryTaxRates": [{"name": "Sneaky", "rate": "1.00"}]}
    assert_forbidden(client.patch(f"{API}/countries/1", json={"data": child}))
    assert_forbidden(client.patch(f"{API}/countries", json={"data": [{"idCountry": 1, **child}]}, headers=headers))
    assert_forbidden(
        client.put(f"{API}/countries", json={"data": [{"idCountry": 1, **COUNTRY_WITH_RATES}]}, headers=headers)
    )
    # a batch where only the second item has children is refused whole, first item included
    batch = [{"iso2Code": "QY", "iso3Code": "QYQ", "name": "Plain"}, COUNTRY_WITH_RATES]
    assert_forbidden(client.post(f"{API}/countries", json={"data": batch}, headers=headers))
    assert fingerprint(backend, *COUNTRY_TABLES) == before, "a refused nested write changed a row"


def test_nested_write_with_both_scopes_is_saved(scoped: Scoped, backend: Backend) -> None:
    """Control for the test above: the very same body is valid once the child scope is there."""
    client = scoped("countries:write tax-rates:write")
    response = client.post(f"{API}/countries", json={"data": [COUNTRY_WITH_RATES]})
    try:
        assert response.status_code == 201, response.text
        saved = response.json()["data"][0]
        # Without read scopes the answer shows identifiers only (test_write_hardening); the rows are saved.
        assert list(saved) == ["idCountry", "countryTaxRates"]
        names = backend.sql(
            "SELECT name FROM shop_tax_rate WHERE fk_country = :id ORDER BY id_tax_rate", id=saved["idCountry"]
        )
        assert [r[0] for r in names] == ["Standard", "Reduced"]
        assert [list(r) for r in saved["countryTaxRates"]] == [["idTaxRate"], ["idTaxRate"]]
    finally:
        rows = backend.sql("SELECT id_country FROM shop_country WHERE iso2_code = 'QZ'")
        for (country_id,) in rows:
            backend.sql("DELETE FROM shop_tax_rate WHERE fk_country = :id", id=country_id)
            backend.sql("DELETE FROM shop_country WHERE id_country = :id", id=country_id)


def test_token_scope_parameter_narrows_an_explicit_list(backend: Backend) -> None:
    client_id, secret = new_client(backend, "products:read tax-rates:read")
    response = client_token(backend.base_url, client_id, secret, scope="products:read")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "products:read"
    headers = bearer(response.json()["access_token"])
    assert httpx.get(f"{backend.base_url}{API}/products/1", headers=headers).status_code == 200
    assert_forbidden(httpx.get(f"{backend.base_url}{API}/tax-rates/1", headers=headers))


@on_one_backend()
def test_token_scope_parameter_narrows_a_wildcard(backend: Backend) -> None:
    """``scope=products:read`` from a ``*:read`` client is a subset of what it may do: a narrowed token."""
    client_id, secret = new_client(backend, "*:read")
    response = client_token(backend.base_url, client_id, secret, scope="products:read")
    assert response.status_code == 200, response.text
    headers = bearer(response.json()["access_token"])
    assert httpx.get(f"{backend.base_url}{API}/products/1", headers=headers).status_code == 200
    assert_forbidden(httpx.get(f"{backend.base_url}{API}/tax-rates/1", headers=headers))


@pytest.fixture(scope="session")
def narrow_client(backend: Backend) -> tuple[str, str]:
    """One ``products:read`` client per backend for the parametrised refusals (saves an argon2 hash each)."""
    return new_client(backend, "products:read")


@pytest.mark.parametrize(
    "asked",
    [
        "products:write",
        "*:write",
        "*:read",
        "products:read products:delete",
        "products",
        "products:admin",
        "tax-rates:read",
    ],
)
def test_token_scope_beyond_the_client_is_invalid_scope(
    backend: Backend, narrow_client: tuple[str, str], asked: str
) -> None:
    assert_oauth_error(client_token(backend.base_url, *narrow_client, scope=asked), "invalid_scope")
