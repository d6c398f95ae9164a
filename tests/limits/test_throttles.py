"""The ``/token`` and back-office login throttles count for every server on the same store: guesses spread over
two app instances (two servers on one database, or on one Redis prefix) are limited as if sent to one, and a
right secret is forgiven wherever it was checked."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admin.conftest import AdminHttp, new_account
from tests.auth.conftest import assert_oauth_error, client_token, new_client, serve, settings_for
from tests.conftest import Backend
from tests.limits.conftest import REDIS_URL


@contextlib.contextmanager
def _two_servers(backend: Backend, **changes: Any) -> Iterator[tuple[str, str]]:
    with serve(settings_for(backend, **changes)) as one, serve(settings_for(backend, **changes)) as two:
        yield one, two


@pytest.mark.parametrize("store", ["database", "redis"])
def test_token_attempts_are_counted_across_servers(
    backend: Backend, request: pytest.FixtureRequest, store: str
) -> None:
    victim, victim_secret = new_client(backend, "products:read")
    changes: dict[str, Any] = {"token_attempts_per_minute": 3, "token_attempts_per_address": 1000}
    if store == "redis":
        changes |= {"redis_url": REDIS_URL, "redis_prefix": request.getfixturevalue("redis_prefix")}
    with _two_servers(backend, **changes) as (one, two):
        for base_url in (one, two, one):
            assert_oauth_error(client_token(base_url, victim, "wrong-secret"), "invalid_client", 401)
        refused = client_token(two, victim, victim_secret)  # the 4th guess, on the server that saw only one
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60, refused.text


def test_login_attempts_are_counted_across_servers(backend: Backend) -> None:
    """Five wrong passwords for one email, alternating between two servers: the sixth attempt is refused on
    either, even with the right password."""
    account = new_account(backend, "viewer")
    with _two_servers(backend) as (one, two):
        clients = [AdminHttp(one), AdminHttp(two)]
        try:
            for attempt in range(5):
                assert clients[attempt % 2].login(account.email, f"wrong-{attempt}").status_code == 401
            for client in clients:
                refused = client.login(account.email, account.password)
                assert refused.status_code == 429 and "Too many attempts" in refused.text
        finally:
            for client in clients:
                client.close()


def test_the_address_counts_guesses_and_first_verifications_not_remembered_secrets(backend: Backend) -> None:
    """Many workers sharing one client fetch tokens as often as they need. The address counts guesses and a
    server's first verification of a secret; once a server verified it, that secret is no guess there and
    counts nowhere, so it is served even while the address is refused for the guesses."""
    client_id, secret = new_client(backend, "products:read")
    fresh_id, fresh_secret = new_client(backend, "products:read")
    settings = {"token_attempts_per_minute": 100, "token_attempts_per_address": 6}
    with _two_servers(backend, **settings) as (one, two):
        assert [client_token(url, client_id, secret).status_code for url in (one, two, one, two, one)] == [200] * 5
        for _ in range(4):  # the address's 3rd to 6th attempts: the first verification on each server were two
            assert client_token(two, client_id, "wrong").status_code == 401
        assert client_token(one, client_id, "wrong").status_code == 429  # the address's 7th
        assert client_token(one, fresh_id, fresh_secret).status_code == 429  # never verified here: counted
        assert client_token(one, client_id, secret).status_code == 200  # remembered by this server: no guess
        assert client_token(two, client_id, secret).status_code == 200


def test_concurrent_requests_with_one_secret_are_not_throttled_by_each_other(backend: Backend) -> None:
    """Twenty workers of one connector asking for a token at the same moment, on a server that has not seen
    the secret yet, with a limit of three attempts a minute: one verification serves them all, none is 429."""
    client_id, secret = new_client(backend, "products:read")
    with serve(settings_for(backend, token_attempts_per_minute=3, token_attempts_per_address=3)) as base_url:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: client_token(base_url, client_id, secret).status_code, range(20)))
        assert statuses == [200] * 20, statuses
        assert client_token(base_url, client_id, "wrong").status_code == 401  # guesses still count: the 2nd
        assert client_token(base_url, client_id, "wrong").status_code == 401
        assert client_token(base_url, client_id, "wrong").status_code == 429
