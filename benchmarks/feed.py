"""The change feed in the benchmark: switching capture on and off for the products, and pulling the feed.

Fed by `run` (the database URL, the dxapi server, the run's bearer token); feeds `run` with the seconds a
switch took and `report.FeedPull` figures.

Switching saves the products' definition with `"changeFeed": true` (or without it) through
`registry.store.save_entities`, as `dxapi config import` does (in-process: a CLI start costs seconds here),
which installs or removes the capture triggers in the same transaction; then it waits until every dxapi
worker serves the new configuration version (`GET /health/ready` → `snapshotVersion`). The run ends with
the feed off; should it be cut short, every run's `config import` of examples/shop-config.json switches it
off too, so a `--skip-load` run starts without triggers.

A pull is what a connector's first full load does: `GET /dynamic-entity/products/_changes` without `since`,
then with `since=<meta.cursor>` until `hasMore` is false, on one keep-alive connection. For comparison the
same table is read as a plain keyset list (`page[cursor]`, following `links.next`).
"""

from __future__ import annotations

import asyncio
import http.client
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from benchmarks.report import FeedPull, log
from benchmarks.scenarios import PRODUCTS_PATH, query
from benchmarks.servers import Server

FEED_ALIAS = "products"
CHANGES_PATH = f"{PRODUCTS_PATH}/_changes"
READY_TIMEOUT_S = 60.0
# Consecutive /health/ready answers (each on a new connection) that must report the new version: with
# several workers each connection may land on another one, and each loads the snapshot on its own.
READY_CONFIRMATIONS_PER_WORKER = 4
PULL_TIMEOUT_S = 120.0  # one page; a pull of the whole table takes seconds


def feed_definition(config_file: Path, enabled: bool) -> bytes:
    """The products' entry of `config_file` alone, with `"changeFeed"` set (or removed: the default, off)."""
    entries: list[dict[str, Any]] = orjson.loads(config_file.read_bytes())
    matching = [e for e in entries if e.get("tableAlias") == FEED_ALIAS]
    if not matching:
        raise SystemExit(f"{config_file} has no entity `{FEED_ALIAS}`")
    entry = matching[0]
    definition = dict(entry["definition"])
    if enabled:
        definition["changeFeed"] = True
    else:
        definition.pop("changeFeed", None)
    return orjson.dumps([{**entry, "definition": definition}], option=orjson.OPT_INDENT_2)


async def _save(url: str, document: Any) -> int:
    from dxapi.db import create_engine
    from dxapi.registry.store import parse_import, save_entities

    engine = create_engine(url, pool_size=1)
    try:
        return await save_entities(engine, parse_import(document), actor="benchmark", action="import")
    finally:
        await engine.dispose()


def switch_feed(url: str, config_file: Path, enabled: bool) -> tuple[str | None, int | None]:
    """Save the products with the feed on/off, as `dxapi config import` does → (problem or None, version)."""
    from dxapi.registry.model import ConfigError

    try:
        version = asyncio.run(_save(url, orjson.loads(feed_definition(config_file, enabled))))
    except ConfigError as exc:
        return f"the configuration was refused: {exc}", None
    except (OSError, SQLAlchemyError) as exc:
        return f"saving the configuration failed: {exc}", None
    return None, version


def wait_for_version(server: Server, version: int, workers: int) -> str | None:
    """Until `/health/ready` reports `snapshotVersion` >= `version` often enough in a row; a problem or None."""
    needed = READY_CONFIRMATIONS_PER_WORKER * max(1, workers)
    seen, last = 0, "no answer"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            status, raw = _get(server.base + "/health/ready")
            current = orjson.loads(raw).get("snapshotVersion") if status == 200 else None
            last = f"{status} {raw[:120].decode(errors='replace')}"
        except (OSError, orjson.JSONDecodeError, AttributeError):
            current = None
        seen = seen + 1 if isinstance(current, int) and current >= version else 0
        if seen >= needed:
            return None
        time.sleep(0.05 if seen else 0.2)
    return f"dxapi did not serve configuration version {version} within {READY_TIMEOUT_S:.0f} s (last: {last})"


def set_feed(url: str, config_file: Path, dxapi: Server, enabled: bool, workers: int) -> tuple[str | None, float]:
    """Switch the products' feed and wait until dxapi serves it → (problem or None, seconds it took)."""
    started_at = time.monotonic()
    problem, version = switch_feed(url, config_file, enabled)
    if problem is None and version is not None:
        problem = wait_for_version(dxapi, version, workers)
    seconds = time.monotonic() - started_at
    if problem is None:
        log(f"change feed of `{FEED_ALIAS}` {'on' if enabled else 'off'} (version {version}) in {seconds:.1f} s")
    return problem, seconds


def _get(url: str) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class PullError(Exception):
    """A page answered something else than a 2xx JSON page; the message says what."""


def _pages(
    base: str, first: str, follow: Callable[[Any], str | None], headers: dict[str, str], read: str, limit: int
) -> FeedPull:
    """Request `first`, then whatever `follow(answer)` returns, on one connection, until it returns None.

    An empty page that says more is coming (held back behind a running transaction) is asked again after
    its Retry-After, as a connector would; those waits count in the time and are reported.
    """
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=PULL_TIMEOUT_S)
    ids: set[Any] = set()
    pull = FeedPull(read, limit)
    path: str | None = first
    started_at = time.perf_counter()
    try:
        while path is not None:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            if not 200 <= response.status < 300:
                raise PullError(f"{path[:120]} answered {response.status}: {raw[:200].decode(errors='replace')}")
            document = orjson.loads(raw)
            pull.pages += 1
            pull.bytes += len(raw)
            for item in document["data"]:
                pull.rows += 1
                pull.deletes += item.get("op") == "delete"
                ids.add(item.get("id", item.get("idProduct")))
            if not document["data"] and response.getheader("Retry-After"):
                pull.waits += 1
                time.sleep(float(response.getheader("Retry-After") or 1))
            path = follow(document)
    finally:
        conn.close()
    pull.seconds = time.perf_counter() - started_at
    pull.distinct_ids = len(ids)
    pull.rows_per_s = pull.rows / pull.seconds if pull.seconds else 0.0
    return pull


def pull_feed(base: str, headers: dict[str, str], limit: int) -> FeedPull:
    """The products' whole feed from the beginning: `since` = the last `meta.cursor` until `hasMore` is false."""

    def follow(document: Any) -> str | None:
        meta = document["meta"]
        if not meta["hasMore"]:
            return None
        return f"{CHANGES_PATH}?" + query(since=meta["cursor"], **{"page[limit]": str(limit)})

    first = f"{CHANGES_PATH}?" + query(**{"page[limit]": str(limit)})
    return _pages(base, first, follow, headers, "_changes", limit)


def pull_list(base: str, headers: dict[str, str], limit: int) -> FeedPull:
    """The products as a keyset list: `page[cursor]=` first, then `links.next` until a page links none."""

    def follow(document: Any) -> str | None:
        link = document.get("links", {}).get("next")
        if not link:
            return None
        # links.next is a path with its query; tolerate an absolute URL too
        parts = urllib.parse.urlsplit(str(link))
        return parts.path + (f"?{parts.query}" if parts.query else "")

    first = f"{PRODUCTS_PATH}?" + query(**{"page[cursor]": "", "page[limit]": str(limit)})
    return _pages(base, first, follow, headers, "list page[cursor]", limit)
