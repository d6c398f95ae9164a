"""The streamed export in the benchmark (`export-ndjson`): every product as NDJSON, from dxapi alone.

Fed by `run` (the dxapi server, the run's headers and bearer token); feeds `run` with figures for the printed
report and latest.json (`meta["export_ndjson"]`).

One `GET /dynamic-entity/products` with `Accept: application/x-ndjson` (no paging: all 100,000 rows, in id
order) read as fast as the client can, `repeats` times, on a fresh connection each, without compression (the
wire is loopback). Measured: rows (lines) per second, time to the first body byte, bytes, and the peak RSS of
the dxapi process tree while it streamed (`servers.peak_rss`). The reference server has no export to compare:
a keyset pull of the same table is what the feed section's `list page[cursor]` row measures.
"""

from __future__ import annotations

import http.client
import statistics
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from benchmarks.report import log
from benchmarks.scenarios import PRODUCTS_PATH
from benchmarks.servers import Server, peak_rss

EXPORT_NDJSON = "export-ndjson"  # --only name: not a Scenario (dxapi only)
TIMEOUT_S = 300.0
READ_BYTES = 256 * 1024


@dataclass
class ExportRun:
    rows: int
    bytes: int
    seconds: float
    first_byte_s: float
    peak_rss_bytes: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class ExportSection:
    runs: list[ExportRun] = field(default_factory=list)
    problem: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "rows_per_s_median": statistics.median(r.rows_per_s for r in self.runs) if self.runs else None,
            "peak_rss_mib_max": max((r.peak_rss_bytes for r in self.runs), default=0) / 2**20,
            "runs": [{**vars(r), "rows_per_s": r.rows_per_s} for r in self.runs],
            "problem": self.problem,
        }


def export_once(server: Server, headers: dict[str, str]) -> ExportRun:
    parts = urllib.parse.urlsplit(server.base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=TIMEOUT_S)
    request = {**headers, "Accept": "application/x-ndjson", "Accept-Encoding": "identity"}
    rows = size = 0
    first = 0.0
    with peak_rss(server.process.pid, interval=0.05) as peak:
        try:
            started = time.monotonic()
            conn.request("GET", PRODUCTS_PATH, headers=request)
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {response.read()[:200].decode(errors='replace')}")
            while chunk := response.read1(READ_BYTES):
                if not first:
                    first = time.monotonic() - started
                rows += chunk.count(b"\n")
                size += len(chunk)
            seconds = time.monotonic() - started
        finally:
            conn.close()
    return ExportRun(rows, size, seconds, first, peak["largest"])


def export_section(dxapi: Server, headers: dict[str, str], repeats: int = 3) -> ExportSection:
    section = ExportSection()
    if dxapi.problem:
        section.problem = f"not measured: {dxapi.problem}"
        return section
    try:
        for _ in range(repeats):
            run = export_once(dxapi, headers)
            section.runs.append(run)
            log(
                f"{EXPORT_NDJSON}: {run.rows:,} rows in {run.seconds:.2f} s ({run.rows_per_s:,.0f} rows/s), "
                f"first byte {run.first_byte_s * 1000:.0f} ms, peak RSS {run.peak_rss_bytes / 2**20:.0f} MiB"
            )
    except (OSError, RuntimeError, http.client.HTTPException) as exc:
        section.problem = f"export failed: {exc}"
        log(f"{EXPORT_NDJSON}: {section.problem}")
    return section


def report_export(section: ExportSection) -> None:
    print()
    print("Export: every product as NDJSON in one streamed answer (dxapi only; loopback, no compression).")
    for run in section.runs:
        print(
            f"  {run.rows:>9,} rows  {run.bytes / 2**20:7.1f} MiB  {run.seconds:6.2f} s  {run.rows_per_s:>9,.0f} rows/s"
            f"  first byte {run.first_byte_s * 1000:5.0f} ms  peak RSS {run.peak_rss_bytes / 2**20:5.0f} MiB"
        )
    if section.problem:
        print(f"export: {section.problem}")
