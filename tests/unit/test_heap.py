"""The heap trim after large requests (dxapi.heap): scheduled once, half a second later, for large ones only."""

from __future__ import annotations

import asyncio

from dxapi.heap import LARGE_REQUEST_ROWS, TRIM_DELAY_SECONDS, HeapTrimmer
from dxapi.observe import Exchange


def _exchange(rows_written: int = 0, rows_read: int = 0) -> Exchange:
    exchange = Exchange("id", "POST", "/x", 0.0, 0.0)
    exchange.rows_written, exchange.rows_read = rows_written, rows_read
    return exchange


def test_small_requests_trim_nothing_and_large_ones_once() -> None:
    trims: list[int] = []

    async def scenario() -> None:
        trimmer = HeapTrimmer(lambda: trims.append(1))
        trimmer.after(_exchange(rows_written=1))
        trimmer.after(_exchange(rows_read=LARGE_REQUEST_ROWS - 1))
        await asyncio.sleep(TRIM_DELAY_SECONDS + 0.1)
        assert trims == []
        trimmer.after(_exchange(rows_written=LARGE_REQUEST_ROWS))
        trimmer.after(_exchange(rows_read=5000))  # one trim pending already
        assert trims == []
        await asyncio.sleep(TRIM_DELAY_SECONDS + 0.1)
        assert trims == [1]
        trimmer.after(_exchange(rows_read=5000))  # the next large one schedules the next trim
        await asyncio.sleep(TRIM_DELAY_SECONDS + 0.1)
        assert trims == [1, 1]

    asyncio.run(scenario())


def test_this_process_can_trim() -> None:
    trimmer = HeapTrimmer.for_this_process()  # Linux with glibc here; elsewhere None and no step at all
    if trimmer is not None:
        assert trimmer._trim is not None
        trimmer._trim()
