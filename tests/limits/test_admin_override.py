"""A client's own rate limit on the admin page: shown, set with the CLI's parser (a bad value is the form's
error and nothing is saved), applied to the client's next requests, and reset to the default."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from tests.admin.conftest import logged_in, new_account
from tests.auth.conftest import access_token, bearer, client_token, new_client, serve, settings_for
from tests.conftest import Backend
from tests.limits.conftest import API


def _stored(backend: Backend, client_id: str) -> list[str | None]:
    return [r[0] for r in backend.sql(sa.text("SELECT rate_limit FROM dx_client WHERE client_id = :i"), i=client_id)]


def test_an_admin_sets_a_clients_own_limit(backend: Backend) -> None:
    client_id, secret = new_client(backend, "*:read")
    admin = logged_in(backend, new_account(backend, "admin"))
    path = f"/admin/clients/{client_id}/rate-limit"
    try:
        bad = admin.post(path, {"rate_limit": "12/fortnight"})
        assert bad.status_code == 400
        assert "Rate limit: `12/fortnight` is not a rate: write COUNT/UNIT" in bad.text
        assert _stored(backend, client_id) == [None]
        saved = admin.post(path, {"rate_limit": "2/minute"})
        assert saved.status_code == 303 and saved.headers["location"] == "/admin/clients"
        assert _stored(backend, client_id) == ["2/minute"]
        page = admin.get("/admin/clients")
        assert f'action="/admin/clients/{client_id}/rate-limit"' in page.text
        assert 'name="rate_limit" value="2/minute"' in page.text
        with serve(settings_for(backend, principal_cache_seconds=0)) as base_url:
            token = access_token(client_token(base_url, client_id, secret))
            with httpx.Client(base_url=base_url, timeout=30, headers=bearer(token)) as api:
                assert [api.get(f"{API}/countries").status_code for _ in range(3)] == [200, 200, 429]
                assert admin.post(path, {"rate_limit": ""}).status_code == 303  # empty: the default (none here)
                assert _stored(backend, client_id) == [None]
                after = api.get(f"{API}/countries")
                assert after.status_code == 200 and "ratelimit" not in after.headers
        added = admin.post("/admin/clients", {"name": "limited", "scopes": "*:read", "rate_limit": "5/hour"})
        assert added.status_code == 200
        rows = backend.sql(sa.text("SELECT rate_limit FROM dx_client WHERE name = 'limited'"))
        assert [r[0] for r in rows] == ["5/hour"]
        refused = admin.post("/admin/clients", {"name": "never", "scopes": "*:read", "rate_limit": "0/hour"})
        assert refused.status_code == 400 and "Rate limit: `0/hour`: count and window must be" in refused.text
        assert backend.sql(sa.text("SELECT count(*) FROM dx_client WHERE name = 'never'"))[0][0] == 0
    finally:
        admin.close()


@pytest.mark.parametrize("value", ["x" * 65, "1/s\x00"])
def test_oversized_or_nul_values_are_refused(backend: Backend, value: str) -> None:
    client_id, _ = new_client(backend, "*:read")
    admin = logged_in(backend, new_account(backend, "admin"))
    try:
        refused = admin.post(f"/admin/clients/{client_id}/rate-limit", {"rate_limit": value})
        assert refused.status_code == 400 and "Rate limit:" in refused.text
        assert _stored(backend, client_id) == [None]
    finally:
        admin.close()
