"""Streamed answers: a list read exported as NDJSON or CSV, sent batch by batch as the database produces it.

Fed by ``endpoints.read_collection`` (after ``request.accept`` chose the type) and ``execute.export`` (the
batches); writes straight to the ASGI connection. ``docs/export.md`` is the user's view.

* The first batch is fetched before anything is sent, so what fails early (pool exhausted, a statement
  timeout on the first fetch, the database down) is an ordinary JSON error with its status.
* After that the status line is out. A database failure ends the answer *without* the final empty chunk of
  the chunked encoding: every HTTP client reports such a body as incomplete (curl exit 18, httpx
  ``RemoteProtocolError``), and a truncated CSV can never pass for a complete one. (An error line in the body
  could not be told from a row.)
* A client that goes away is noticed by a task that waits for ``http.disconnect``; the export stops after the
  batch in hand and its cursor and connection are released at once (``execute.export``). uvicorn's ``send``
  blocks while the client's socket buffer is full, so a slow reader holds the export one batch deep.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from dxapi import errors
from dxapi.db import DriverPool
from dxapi.dberrors import StaleConnection, database_errors, read_errors
from dxapi.execute.export import Batch, export_batches
from dxapi.fields.base import FieldType
from dxapi.plan.types import ReadPlan
from dxapi.request.accept import CSV, NDJSON
from dxapi.responses import BASE_HEADERS, _unencodable

log = logging.getLogger("dxapi.export")

CONTENT_TYPES = {NDJSON: b"application/x-ndjson", CSV: b"text/csv; charset=utf-8; header=present"}


class StreamBroken(BaseException):
    """Raised out of the application to make the server close the connection mid-answer, without the final
    chunk. Not an ``Exception``: Starlette's error layers would try to answer it (the status is already out)
    and log it twice; uvicorn closes the connection on it."""


async def start_export(engine: AsyncEngine, plan: ReadPlan, pool: DriverPool | None, media_type: str) -> Export:
    """The export of ``plan`` with its first batch already fetched (errors until then: catalogued, raised)."""
    writer: Writer = NdjsonWriter() if media_type == NDJSON else CsvWriter(plan)
    try:
        batches = export_batches(engine, plan, pool)
        first = await _next(batches)
    except StaleConnection:
        # A pooled connection died (database restarted) and was dropped: nothing was sent, so try once more.
        batches = export_batches(engine, plan, pool)
        first = await _next(batches)
    return Export(media_type, writer, first or [], batches, plan.entity.alias)


async def _next(batches: AsyncGenerator[Batch, None]) -> Batch | None:
    async with database_errors():
        with read_errors():
            return await anext(batches, None)


class Export(Response):
    """The ASGI answer of an export: headers, the first batch, then every batch as it arrives. A ``Response``
    for the routes' sake; it sends itself (no body, no length: chunked)."""

    def __init__(
        self, media_type: str, writer: Writer, first: Batch, batches: AsyncGenerator[Batch, None], alias: str
    ) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self._content_type = CONTENT_TYPES[media_type]
        self._writer = writer
        self._first = first
        self._batches = batches
        self._alias = alias

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            headers = [(b"content-type", self._content_type)]
            headers += [(k.lower().encode(), v.encode()) for k, v in BASE_HEADERS.items()]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": self._writer.first(self._first), "more_body": True})
            self._first = []
            while not gone.is_set():
                batch = await _next(self._batches)
                if batch is None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                await send({"type": "http.response.body", "body": self._writer.rows(batch), "more_body": True})
        except errors.ApiError as exc:
            item = exc.items[0]
            log.warning("export of `%s` broken off after its first bytes: %s %s", self._alias, item.code, item.message)
            raise StreamBroken(item.code) from None
        finally:
            watcher.cancel()
            await self._batches.aclose()


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


# --- formats --------------------------------------------------------------------------------------------------


class Writer:
    def first(self, batch: Batch) -> bytes:
        """The opening bytes: the first batch, and whatever comes before any row."""
        return self.rows(batch)

    def rows(self, batch: Batch) -> bytes:
        raise NotImplementedError


class NdjsonWriter(Writer):
    """One row object per line, exactly as in a page's ``data`` (the same renderer and JSON encoder)."""

    def rows(self, batch: Batch) -> bytes:
        dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        return b"".join([dumps(item, default=_unencodable, option=option) for item in batch])


def _csv_boolean(value: Any) -> Any:
    return value if value is None else ("true" if value else "false")


def _csv_json(value: Any) -> Any:
    return value if value is None else orjson.dumps(value, default=_unencodable).decode()


def _csv_json_text(value: Any) -> Any:
    """A value the JSON encoder writes as a string (a date-time, a UUID): the same text, not Python's ``str``
    (``2025-12-08 15:12:54`` where the JSON row says ``2025-12-08T15:12:54``)."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, default=_unencodable).decode().strip('"')


_CSV_CELLS: dict[FieldType, Callable[[Any], Any]] = {
    FieldType.BOOLEAN: _csv_boolean,
    FieldType.JSON: _csv_json,
    FieldType.DATETIME: _csv_json_text,
    FieldType.DATE: _csv_json_text,
    FieldType.UUID: _csv_json_text,
}


class CsvWriter(Writer):
    """RFC 4180: a header row of visible names, CRLF line ends, a cell quoted when it holds a comma, quote, CR or
    LF (quotes doubled). Cells are the values of the JSON rows: NULL an empty cell, booleans ``true``/``false``,
    decimals their exact text (``20.00``), JSON fields their compact JSON text, dates and date-times the text of
    the JSON row."""

    def __init__(self, plan: ReadPlan) -> None:
        self._entity = plan.entity
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")
        self._names: tuple[str, ...] = ()
        self._cells: list[tuple[int, Callable[[Any], Any]]] = []

    def first(self, batch: Batch) -> bytes:
        # The columns are what the rendered rows hold (which fields a plan selects is the plan's business);
        # without a row, every visible field.
        self._names = tuple(batch[0]) if batch else self._entity.names
        types = {field.name: field.type for field in self._entity.fields}
        self._cells = [(i, _CSV_CELLS[types[n]]) for i, n in enumerate(self._names) if types.get(n) in _CSV_CELLS]
        self._csv.writerow(self._names)
        return self._take() + self.rows(batch)

    def rows(self, batch: Batch) -> bytes:
        names, cells, write = self._names, self._cells, self._csv.writerow
        for item in batch:
            values = [item[name] for name in names]
            for at, cell in cells:
                values[at] = cell(values[at])
            write(values)
        return self._take()

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()
