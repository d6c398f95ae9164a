"""``X-Api-Key`` (Spryker compatible; DESIGN §5) on every backend, and the ``dxapi`` credential commands.

A valid key reads exactly what its scopes allow; an expired, revoked, unknown or malformed key is a 401 with
``WWW-Authenticate: Bearer error="invalid_token"`` and code ``001``, and nothing is written. The CLI test runs
the real ``dxapi client|apikey|user`` commands as subprocesses on the first backend: secrets are printed once,
rotation and revocation take effect, and a password given on the command line is never echoed.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dxapi.auth import principals
from tests.auth.conftest import (
    API,
    access_token,
    assert_forbidden,
    assert_oauth_error,
    assert_unauthorized,
    bearer,
    client_token,
    fingerprint,
    new_api_key,
    on_one_backend,
    password_token,
    store,
    utcnow,
    wait_for,
)
from tests.conftest import Backend

_SCRIPT = Path(sys.executable).parent / "dxapi"
DXAPI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dxapi.cli"]


def _get(backend: Backend, path: str, key: str) -> httpx.Response:
    return httpx.get(f"{backend.base_url}{path}", headers={"X-Api-Key": key}, timeout=30)


def test_valid_key_reads_within_its_scopes(backend: Backend) -> None:
    _, key = new_api_key(backend, "products:read", utcnow() + dt.timedelta(days=1))
    listed = _get(backend, f"{API}/products", key)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["data"]) == backend.settings.default_page_limit
    assert _get(backend, f"{API}/products/3", key).json()["data"]["idProduct"] == 3
    assert_forbidden(_get(backend, f"{API}/tax-rates", key))
    assert_forbidden(_get(backend, f"{API}/products?include=productTaxRate", key))
    before = fingerprint(backend, "shop_product")
    headers = {"X-Api-Key": key}
    assert_forbidden(
        httpx.patch(
            f"{backend.base_url}{API}/products/1", json={"data": {"name": "Hacked"}}, headers=headers, timeout=30
        )
    )
    assert_forbidden(httpx.delete(f"{backend.base_url}{API}/products/1", headers=headers, timeout=30))
    assert fingerprint(backend, "shop_product") == before


def test_key_without_expiry_and_wildcard(backend: Backend) -> None:
    _, key = new_api_key(backend, "*:read")
    for alias in ("countries", "tax-rates", "stocks"):
        assert _get(backend, f"{API}/{alias}?page[limit]=1", key).status_code == 200


def test_expired_key_is_refused(backend: Backend) -> None:
    _, key = new_api_key(backend, "products:read", utcnow() - dt.timedelta(hours=1))
    assert_unauthorized(_get(backend, f"{API}/products/1", key))


@on_one_backend()
def test_key_expiring_now_stops_working(backend: Backend) -> None:
    """A key valid for two more seconds works now and is refused once its time is up (cache included)."""
    _, key = new_api_key(backend, "products:read", utcnow() + dt.timedelta(seconds=2))
    assert _get(backend, f"{API}/products/1", key).status_code == 200
    waited = wait_for(lambda: _get(backend, f"{API}/products/1", key).status_code == 401, timeout=8, step=0.2)
    assert waited is not None and waited <= 2 + 5, waited


def test_revoked_key_is_refused(backend: Backend) -> None:
    prefix, key = new_api_key(backend, "products:read")
    assert store(backend, lambda e: principals.revoke_api_key(e, prefix))
    assert_unauthorized(_get(backend, f"{API}/products/1", key))


@pytest.mark.parametrize(
    "key",
    ["", "garbage", "dxk_", "dxk_" + "A" * 43, "dxk_" + "A" * 500, "x" * 10_000, "Bearer dxk_abc", "dxk_' OR '1'='1"],
    ids=["empty", "garbage", "prefix-only", "unknown", "long", "10kb", "bearer-in-key", "sql"],
)
def test_unknown_or_malformed_key_is_refused(backend: Backend, key: str) -> None:
    before = fingerprint(backend, "shop_product")
    assert_unauthorized(_get(backend, f"{API}/products/1", key))
    response = httpx.post(
        f"{backend.base_url}{API}/products",
        headers={"X-Api-Key": key},
        timeout=30,
        json={"data": [{"sku": "KEY-1", "name": "x", "fkCategory": 1, "price": "1.00"}]},
    )
    assert_unauthorized(response)
    assert fingerprint(backend, "shop_product") == before


@on_one_backend()
def test_key_of_another_key_with_the_same_prefix_is_refused(backend: Backend) -> None:
    """The stored prefix only finds the row; the rest of the key is still verified."""
    _, key = new_api_key(backend, "products:read")
    forged = key[:-6] + ("AAAAAA" if not key.endswith("AAAAAA") else "BBBBBB")
    assert_unauthorized(_get(backend, f"{API}/products/1", forged))


@on_one_backend()
def test_key_is_not_a_bearer_token(backend: Backend) -> None:
    _, key = new_api_key(backend, "products:read")
    response = httpx.get(f"{backend.base_url}{API}/products/1", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert_unauthorized(response)


# --- the CLI ----------------------------------------------------------------------------------------------------------


def _dxapi(backend: Backend, cwd: Path, commands: dict[str, list[str]]) -> dict[str, str]:
    """Run independent ``dxapi`` commands side by side; return each one's stdout (each must succeed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXAPI_")}
    started = {
        name: subprocess.Popen(
            [*DXAPI, "--database-url", backend.url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        for name, args in commands.items()
    }
    outputs = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, (name, err)
        outputs[name] = out + err
    return outputs


def _value(output: str, name: str) -> str:
    found = re.search(rf"^{name}=(\S+)$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


@on_one_backend()
def test_cli_credentials_lifecycle(backend: Backend, tmp_path: Path) -> None:
    base = backend.base_url
    email, password = f"cli-{utcnow():%H%M%S%f}@example.com", "a-long-cli-password-1"
    added = _dxapi(
        backend,
        tmp_path,
        {
            "client": ["client", "add", "cli connector", "--scopes", "products:read"],
            "key": ["apikey", "add", "cli key", "--scopes", "products:read", "--days", "1"],
            "user": ["user", "add", email, "--password", password, "--role", "viewer"],
        },
    )
    client_id, secret = _value(added["client"], "client_id"), _value(added["client"], "client_secret")
    key, key_id = _value(added["key"], "api_key"), _value(added["key"], "id")
    assert password not in added["user"]
    token = access_token(client_token(base, client_id, secret))
    assert httpx.get(f"{base}{API}/products/1", headers=bearer(token), timeout=30).status_code == 200
    assert _get(backend, f"{API}/products/1", key).status_code == 200
    assert password_token(base, email, password).status_code == 200

    changed = _dxapi(
        backend,
        tmp_path,
        {
            "rotate": ["client", "rotate-secret", client_id],
            "revoke": ["apikey", "revoke", key_id],
            "disable": ["user", "disable", email],
        },
    )
    new_secret = _value(changed["rotate"], "client_secret")
    assert new_secret != secret
    assert_oauth_error(client_token(base, client_id, secret), "invalid_client", 401)
    assert client_token(base, client_id, new_secret).status_code == 200
    assert_oauth_error(password_token(base, email, password), "invalid_grant")
    (revoked_at,) = backend.sql("SELECT revoked_at FROM dx_api_key WHERE prefix = :p", p=key_id)[0]
    assert revoked_at is not None  # the HTTP side of revocation is timed in test_revocation
