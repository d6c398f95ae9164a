"""Fixtures of the rate-limit suite: the real Redis, one fresh key prefix per test, and the counters to test.

Redis is ``DXAPI_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); unreachable, every test that needs it
fails, never skips. Each test writes under a prefix of its own (``dxapi-test-<random>:``) and its keys are
deleted afterwards, so tests never see each other's counters, nor anyone else's keys.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("DXAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
API = "/dynamic-entity"


def _delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis; its keys are removed afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}", pytrace=False)
    finally:
        client.close()
    prefix = f"dxapi-test-{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        _delete_keys(prefix)


def redis_keys(prefix: str) -> dict[str, int]:
    """Every key under ``prefix`` and its count."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return {key.decode(): int(client.get(key) or 0) for key in client.scan_iter(match=f"{prefix}*")}
    finally:
        client.close()
