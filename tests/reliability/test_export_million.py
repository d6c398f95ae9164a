"""A million rows exported from PostgreSQL as NDJSON and as CSV: flat memory, fast, streamed, slow readers too.

One ``dxapi serve`` process (no fork server: its memory is its own) serves a table of 1,000,000 rows of the
suite's cluster, straight (not through the fault proxy: the proxy is not what is measured). For each format
the test reads the whole export as fast as it can and checks:

* every row arrives (the line count), at 50,000 rows/s or more;
* the server's peak resident set (``VmHWM``, the kernel's own high-water mark, so no sample can miss a peak)
  stays under 150 MB;
* the first byte arrives long before the last (under a tenth of the total time), with the export's cursor
  still open in the database at that moment: the rows were sent while the database was still producing them.

Then a client reads at 64 KB/s for 10 s. ``DXAPI_STATEMENT_TIMEOUT`` is 1 s here, so an export bounded as one
statement would have died; each fetch is a statement of its own. The server's RSS must not grow while the
client dawdles (the socket's buffer is full, and the export waits), and after the client leaves the cursor's
session is idle again within a second. The figures are printed (``pytest -s`` shows them; ``-rA`` too).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dxapi.db import create_engine
from dxapi.registry.store import parse_import, save_entities
from tests.reliability.traffic import Shop
from tests.reload.processes import API, ServerProcess

ROWS = 1_000_000
MAX_RSS = 150 * 2**20
MIN_ROWS_PER_SECOND = 50_000
ALIAS = "export-rows"
SLOW_BYTES_PER_SECOND = 64 * 1024
SLOW_FOR = 10.0
CONFIG = [
    {
        "tableName": "export_row",
        "tableAlias": ALIAS,
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": False,
            "fields": [
                {"fieldName": name, "fieldVisibleName": visible, "type": kind, "isCreatable": True, "isEditable": True}
                for name, visible, kind in [
                    ("id", "id", "integer"),
                    ("sku", "sku", "string"),
                    ("name", "name", "string"),
                    ("price", "price", "decimal"),
                    ("is_active", "isActive", "boolean"),
                    ("quantity", "quantity", "integer"),
                    ("created_at", "createdAt", "datetime"),
                ]
            ],
        },
    }
]


@pytest.fixture(scope="module")
def million(shop: Shop) -> Shop:
    with shop.session() as db:
        db.execute("DROP TABLE IF EXISTS export_row")
        db.execute(
            "CREATE TABLE export_row (id integer PRIMARY KEY, sku varchar(32) NOT NULL, name varchar(100) NOT NULL, "
            "price numeric(12, 2), is_active boolean, quantity integer, created_at timestamp)"
        )
        db.execute(
            "INSERT INTO export_row SELECT i, 'SKU-' || lpad(i::text, 8, '0'), 'Product, \"no.\" ' || i, "
            "(i % 100000) / 100.0, i % 3 <> 0, i % 1000, timestamp '2026-01-01' + i * interval '1 second' "
            f"FROM generate_series(1, {ROWS}) AS i"
        )
        db.execute("ANALYZE export_row")

    async def configure() -> None:
        engine = create_engine(shop.direct_url)
        try:
            await save_entities(engine, parse_import(CONFIG), actor="test", action="import")
        finally:
            await engine.dispose()

    asyncio.run(configure())
    return shop


@pytest.fixture(scope="module")
def server(million: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("export")
    env = {"DXAPI_STATEMENT_TIMEOUT": "1", "DXAPI_RELOAD_INTERVAL": "0.1"}
    started = ServerProcess("export", million.direct_url, secrets.token_urlsafe(48), directory, env=env)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def rss(pid: int) -> tuple[int, int]:
    """(resident now, peak resident since the process started), in bytes, from /proc/<pid>/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


def export_cursors(shop: Shop) -> list[Any]:
    """The sessions of the database running or holding the export's statement (its cursor's transaction)."""
    with shop.session() as db:
        return db.fetch(
            "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query ILIKE '%export_row%' AND state <> 'idle'"
        )


def headers(server: ServerProcess, shop: Shop, accept: str, encoding: str = "identity") -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(shop.database)}", "Accept": accept, "Accept-Encoding": encoding}


@pytest.mark.parametrize(
    ("accept", "encoding", "lines"),
    [
        ("application/x-ndjson", "identity", ROWS),
        ("text/csv", "identity", ROWS + 1),
        ("application/x-ndjson", "gzip", ROWS),  # compressed batch by batch, as it streams
    ],
    ids=["ndjson", "csv", "ndjson-gzip"],
)
def test_million_rows_stream_fast_in_flat_memory(
    million: Shop, server: ServerProcess, accept: str, encoding: str, lines: int
) -> None:
    pid = server.process.pid
    before, _ = rss(pid)
    count = size = 0
    cursor_open_at_first_byte: list[Any] = []
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        started = time.monotonic()
        with http.stream("GET", f"{API}/{ALIAS}", headers=headers(server, million, accept, encoding)) as response:
            assert response.status_code == 200, response.read()
            assert response.headers.get("content-encoding", "identity") == encoding
            first_byte = 0.0
            for chunk in response.iter_bytes(256 * 1024):  # decoded when gzip
                if not first_byte:
                    first_byte = time.monotonic() - started
                    cursor_open_at_first_byte = export_cursors(million)
                    last = chunk
                count += chunk.count(b"\n")
                size += len(chunk)
                last = chunk
        total = time.monotonic() - started
    after, peak = rss(pid)
    rate = ROWS / total
    print(
        f"\n{accept} ({encoding}): {ROWS:,} rows, {size / 2**20:.1f} MiB in {total:.2f} s = {rate:,.0f} rows/s; "
        f"first byte after {first_byte * 1000:.1f} ms; server RSS {before / 2**20:.1f} MiB before, "
        f"{after / 2**20:.1f} MiB after, peak (VmHWM) {peak / 2**20:.1f} MiB"
    )
    assert count == lines
    assert last.endswith(b"\n")
    assert peak < MAX_RSS, f"peak RSS {peak / 2**20:.1f} MiB"
    assert rate >= MIN_ROWS_PER_SECOND
    assert first_byte < total / 10
    assert cursor_open_at_first_byte, "the export's cursor was already closed at the first byte"
    assert server.logged_errors() == []


def test_slow_reader_does_not_grow_server_memory(million: Shop, server: ServerProcess) -> None:
    pid = server.process.pid
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            samples.append(rss(pid)[0])

    received = 0
    sampler = threading.Thread(target=sample, daemon=True)
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        request = headers(server, million, "application/x-ndjson")
        with http.stream("GET", f"{API}/{ALIAS}", headers=request) as response:
            assert response.status_code == 200
            chunks = response.iter_raw(16 * 1024)
            started = time.monotonic()
            sampler.start()
            while (elapsed := time.monotonic() - started) < SLOW_FOR:
                received += len(next(chunks))
                # 64 KB/s: wait until the bytes read so far are due
                time.sleep(max(0.0, received / SLOW_BYTES_PER_SECOND - elapsed))
            held_open = export_cursors(million)
    stop.set()
    sampler.join()
    left = time.monotonic()
    while export_cursors(million) and time.monotonic() - left < 5:
        time.sleep(0.05)
    released_after = time.monotonic() - left
    settled = samples[len(samples) // 5 :]  # after the first two seconds: the socket buffers are full by then
    growth = max(settled) - min(settled)
    print(
        f"\nslow reader: {received / 2**10:.0f} KiB in {SLOW_FOR:.0f} s; server RSS from {min(samples) / 2**20:.1f} "
        f"to {max(samples) / 2**20:.1f} MiB (after 2 s: {growth / 2**20:.2f} MiB of growth); cursor released "
        f"{released_after * 1000:.0f} ms after the client left"
    )
    assert SLOW_BYTES_PER_SECOND * SLOW_FOR * 0.8 <= received <= SLOW_BYTES_PER_SECOND * (SLOW_FOR + 1)
    assert held_open, "the export ended before the slow client left (statement timeout per export?)"
    assert growth < 4 * 2**20
    assert max(samples) < MAX_RSS
    assert released_after < 1.0
    assert server.logged_errors() == []
