"""The OpenAPI document is valid, follows every configuration change at once, and the server keeps its word.

* ``/dynamic-entity/openapi.json`` of the demo configuration passes ``openapi_spec_validator`` (on the shared
  server of every backend) and needs a token;
* right after a configuration change the document carries the new ``info.version`` and its paths and schemas
  show a removed and re-added field and a deactivated and re-activated alias;
* the docs page is served with a Content-Security-Policy and loads its script and style from
  ``/dynamic-entity/static/``;
* schemathesis, run from its CLI with a fixed seed and a bounded number of examples against a dedicated
  ``dxapi serve`` process on its own SQLite copy of the demo data (fuzzed writes disturb nobody), finds no
  server error and no response that contradicts the document. Its JUnit report lands in
  ``test-artifacts/reload/``.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import secrets
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from openapi_spec_validator import validate

from tests.conftest import Backend, shop_config
from tests.reload.processes import API, ARTIFACTS, ServerProcess, running, throwaway_database

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
# Two bounded runs, together well under 40 s: every operation with random data, and boundary values (the
# coverage phase) for the richest entity (decimals, dates, relations, deletable) and the awkward tables.
RUNS = {
    "all-operations": ("^/dynamic-entity/", "examples,fuzzing"),
    "boundaries": (r"^/dynamic-entity/(products|orders|MixedCase)(/\{id\})?$", "examples,coverage,fuzzing"),
}
SEED = 20240607


def document(api: httpx.Client) -> dict[str, Any]:
    response = api.get(f"{API}/openapi.json")
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def restore_shop(backend: Backend) -> Iterator[None]:
    """Put the example configuration of the shop back, whatever the test did to it."""
    try:
        yield
    finally:
        backend.import_config(shop_config())


def test_document_is_valid_openapi(api: httpx.Client) -> None:
    spec = document(api)
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for alias in ("products", "countries", "tax-rates", "categories", "stocks", "orders", "MixedCase"):
        assert f"{API}/{alias}" in spec["paths"], alias
        assert f"{API}/{alias}/{{id}}" in spec["paths"], alias
    assert f"{API}/parked" not in spec["paths"]  # configured but inactive


def test_document_follows_a_configuration_change(backend: Backend, api: httpx.Client, restore_shop: None) -> None:
    before = document(api)
    entries = {e["tableAlias"]: e for e in shop_config()}
    products = copy.deepcopy(entries["products"])
    products["definition"]["fields"] = [f for f in products["definition"]["fields"] if f["fieldName"] != "description"]
    countries = dict(entries["countries"], isActive=False)

    version = backend.import_config([products, countries])
    changed = document(api)
    validate(changed)
    assert changed["info"]["version"] == f"config-{version}" != before["info"]["version"]
    assert "description" in before["components"]["schemas"]["products"]["properties"]
    assert "description" not in changed["components"]["schemas"]["products"]["properties"]
    assert "description" not in changed["components"]["schemas"]["products-create"]["properties"]
    assert "filter[products.description]" not in {
        p["name"] for p in changed["paths"][f"{API}/products"]["get"]["parameters"]
    }
    assert f"{API}/countries" in before["paths"]
    assert f"{API}/countries" not in changed["paths"] and f"{API}/countries/{{id}}" not in changed["paths"]
    assert "countries" not in changed["components"]["schemas"]

    version = backend.import_config([entries["products"], entries["countries"]])
    again = document(api)
    validate(again)
    assert again["info"]["version"] == f"config-{version}"
    assert "description" in again["components"]["schemas"]["products"]["properties"]
    assert f"{API}/countries/{{id}}" in again["paths"]
    assert again["paths"] == before["paths"] and again["components"] == before["components"]


def test_document_needs_a_token(backend: Backend) -> None:
    response = httpx.get(f"{backend.base_url}{API}/openapi.json", timeout=10)
    assert response.status_code == 401, response.text
    assert response.headers.get("www-authenticate", "").startswith("Bearer")


def test_docs_page_has_a_csp_and_own_assets(backend: Backend) -> None:
    with httpx.Client(base_url=backend.base_url, timeout=10) as anonymous:
        page = anonymous.get(f"{API}/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text[:200]
        csp = page.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, csp
        assert "unsafe-inline" not in csp
        assert page.headers.get("x-content-type-options") == "nosniff"
        page_url = f"{backend.base_url}{API}/docs"
        assets = re.findall(r'<(?:script[^>]*\bsrc|link[^>]*\bhref)="([^"]+)"', page.text)
        assert len(assets) >= 2, assets
        assert "<script>" not in page.text and "<style" not in page.text  # nothing inline for the CSP to allow
        types = {".js": "javascript", ".css": "text/css"}
        for asset in assets:
            url = urljoin(page_url, asset)
            assert url.startswith(f"{backend.base_url}{API}/static/"), url
            response = anonymous.get(url)
            assert response.status_code == 200 and response.content, url
            expected = next(kind for suffix, kind in types.items() if url.endswith(suffix))
            assert expected in response.headers["content-type"], (url, response.headers["content-type"])


def _junit_numbers(report: Path) -> dict[str, int]:
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    numbers = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in numbers:
            numbers[key] += int(suite.get(key, 0))
    return numbers


@pytest.mark.timeout(120)
@pytest.mark.parametrize("run", list(RUNS))
def test_schemathesis_finds_no_server_error_or_schema_violation(
    run: str, loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    paths, phases = RUNS[run]
    with throwaway_database("sqlite", loop, tmp_path) as database:
        # A small batch maximum: schemathesis sends bodies of maxItems items, and 10,000 of them, refused
        # item by item, would only measure the machine.
        server = ServerProcess(
            "fuzz", database.url, secrets.token_urlsafe(48), tmp_path, env={"DXAPI_MAX_BATCH_ITEMS": "50"}
        )
        with running([server]):
            token = server.token(database)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            report = ARTIFACTS / f"schemathesis-{run}.xml"
            report.unlink(missing_ok=True)
            command = [
                str(SCHEMATHESIS),
                "run",
                f"{server.base_url}{API}/openapi.json",
                "-H",
                f"Authorization: Bearer {token}",
                "--checks",
                CHECKS,
                "--max-examples",
                "5",
                "--seed",
                str(SEED),
                "--include-path-regex",
                paths,
                "--phases",
                phases,
                "--workers",
                "1",
                "--no-shrink",
                "--request-timeout",
                "10",
                "--report",
                "junit",
                "--report-junit-path",
                str(report),
            ]
            environment = {k: v for k, v in os.environ.items() if not k.startswith("DXAPI_")}
            started = time.monotonic()
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=100,
                cwd=tmp_path,
                env={**environment, "NO_COLOR": "1"},
                check=False,
            )
            took = time.monotonic() - started
            log = server.log_tail(80)
    summary = "\n".join(line for line in done.stdout.splitlines()[-25:])
    print(f"\nschemathesis {run} ({took:.1f}s):\n{summary}")
    assert done.returncode == 0, f"schemathesis failed:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}\n{log}"
    numbers = _junit_numbers(report)
    print(f"schemathesis junit: {numbers}")
    assert numbers["tests"] >= 20 and numbers["failures"] == 0 and numbers["errors"] == 0, numbers
    assert took < 40, f"schemathesis took {took:.1f}s"


def test_document_describes_retries_and_preconditions(api: httpx.Client) -> None:
    """Every write takes ``Idempotency-Key`` (409, 422, the replay header); one row answers an ``ETag``, takes
    ``If-None-Match`` on GET (304) and ``If-Match`` on writes (412); collection PATCH/PUT items take ``@etag``."""
    spec = document(api)
    collection, single = spec["paths"][f"{API}/products"], spec["paths"][f"{API}/products/{{id}}"]
    writes = [collection[m] for m in ("post", "patch", "put", "delete")] + [
        single[m] for m in ("patch", "put", "delete")
    ]
    for operation in writes:
        assert "Idempotency-Key" in [p["name"] for p in operation["parameters"]], operation["operationId"]
        assert {"409", "422"} <= set(operation["responses"]), operation["operationId"]
        success = next(s for s in operation["responses"] if s.startswith("2"))
        assert "Idempotency-Replayed" in operation["responses"][success]["headers"]
    for operation in (single["patch"], single["put"], single["delete"]):
        assert "If-Match" in [p["name"] for p in operation["parameters"]]
        assert "412" in operation["responses"]
    assert "If-None-Match" in [p["name"] for p in single["put"]["parameters"]]
    for operation in (single["patch"], single["put"]):
        assert "ETag" in operation["responses"]["200"]["headers"]
    read = single["get"]
    assert "If-None-Match" in [p["name"] for p in read["parameters"]]
    assert "ETag" in read["responses"]["200"]["headers"] and "304" in read["responses"]
    schemas = spec["components"]["schemas"]
    assert "@etag" in schemas["products-update"]["properties"] and "@etag" in schemas["products-replace"]["properties"]
    assert "@etag" not in schemas["products-create"]["properties"]
    assert {"412"} <= set(collection["patch"]["responses"]) and "412" in collection["put"]["responses"]
