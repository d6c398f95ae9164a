"""Streaming export of a list read (docs/export.md): ``Accept: application/x-ndjson`` and ``text/csv``.

Every test runs on each backend of ``DXAPI_TEST_BACKENDS``. The rows an export must hold are the rows of the
JSON page of the same read (one page of ``page[limit]=500`` holds the whole shop table): the export shares the
page's renderer, so any difference in values, types or order is a bug of the export. A table of our own holds
more rows than any page may (``max_page_limit`` is 500) and the cells CSV has to quote.

The server runs in this process: a test can shrink ``execute.export.BATCH_ROWS`` (so a few hundred rows make
many batches, and an include spans them), slow the batches down (so a client can leave mid-stream) or break
one (a database failure after the first byte).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

import dxapi.execute.export as export_module
from tests.api.test_read import assert_error, data
from tests.conftest import SERVER_ERRORS, Backend, config_field, only_on, serving

PREFIX = "/dynamic-entity"
NDJSON = "application/x-ndjson"
CSV = "text/csv"
ALL = {"page[limit]": "500"}

META = sa.MetaData()
CELLS = sa.Table(
    "export_cell",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("label", sa.String(100), nullable=True),
    sa.Column("flag", sa.Boolean, nullable=True),
    sa.Column("doc", sa.JSON, nullable=True),
    sa.Column("amount", sa.Numeric(10, 2), nullable=True),
)
CELL_CONFIG = [
    {
        "tableName": "export_cell",
        "tableAlias": "export-cells",
        "isActive": True,
        "definition": {
            "identifier": "id",
            "isDeletable": False,
            "fields": [
                config_field("id", "integer"),
                config_field("label"),
                config_field("flag", "boolean"),
                config_field("doc", "json"),
                config_field("amount", "decimal", validation={"precision": 10, "scale": 2}),
            ],
        },
    }
]
CELL_ROWS = 1234  # more than max_page_limit (500) and than one batch (1000)
# Cells that test the quoting, cycled through the rows.
LABELS = ["plain", "a,b", 'say "hi"', "two\nlines", "carriage\rreturn", "", None, "ünïcode ✓", " padded "]


def cell_row(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "label": LABELS[(i - 1) % len(LABELS)],
        "flag": None if i % 3 == 0 else i % 2 == 0,
        "doc": None if i % 4 == 0 else {"n": i, "tags": ["x", "y, z"], "q": 'a "quote"'},
        "amount": None if i % 5 == 0 else Decimal(i) / 4,
    }


@pytest.fixture(scope="module")
def cells(backend: Backend) -> Iterator[Backend]:
    with serving(backend, META, CELL_CONFIG):
        backend.with_engine(_fill)
        yield backend


async def _fill(engine: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.insert(CELLS), [cell_row(i) for i in range(1, CELL_ROWS + 1)])


def export(api: httpx.Client, path: str, accept: str, params: Any = None, **headers: str) -> httpx.Response:
    response = api.get(PREFIX + path, params=params, headers={"Accept": accept, **headers})
    assert response.status_code < 500, response.text
    return response


def ndjson_rows(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NDJSON
    assert response.headers["cache-control"] == "no-store"
    assert "content-length" not in response.headers  # streamed: chunked
    body = response.content
    assert body == b"" or body.endswith(b"\n")
    return [orjson.loads(line) for line in body.split(b"\n")[:-1]]


def csv_table(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8; header=present"
    assert "content-length" not in response.headers
    text = response.content.decode()
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline="")))


def cell_text(value: Any) -> str:
    """What a JSON row value is as a CSV cell (docs/export.md)."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


@pytest.fixture(params=[1000, 7], ids=["batch-1000", "batch-7"])
def batch_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    size: int = request.param
    monkeypatch.setattr(export_module, "BATCH_ROWS", size)
    return size


# --- negotiation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept", [None, "application/json", "*/*", "application/*", "text/html,application/xhtml+xml,*/*;q=0.8"]
)
def test_accept_of_json_answers_the_page_byte_for_byte(api: httpx.Client, accept: str | None) -> None:
    params = {"sort": "-price", "page[limit]": "5"}
    plain = api.get(PREFIX + "/products", params=params, headers={"Accept": ""})
    asked = api.get(PREFIX + "/products", params=params, headers={"Accept": accept} if accept else {})
    assert asked.status_code == plain.status_code == 200
    assert asked.headers["content-type"] == "application/json"
    assert asked.content == plain.content
    assert len(asked.json()["data"]) == 5


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (NDJSON, NDJSON),
        (CSV, CSV),
        ("text/csv;q=0.5, application/x-ndjson", NDJSON),
        ("application/x-ndjson;q=0.2, text/csv", CSV),
        ("text/*", CSV),
        ("image/png, text/csv;q=0.1", CSV),
        ("application/json;q=0.1, application/x-ndjson", NDJSON),
        ("application/x-ndjson;q=0.5, application/json;q=0.5", "application/json"),
        ("TEXT/CSV ; Q=1", CSV),
    ],
)
def test_accept_chooses_by_q_then_specificity(api: httpx.Client, accept: str, chosen: str) -> None:
    response = export(api, "/countries", accept, {"sort": "iso2Code"} if chosen == "application/json" else None)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == chosen


@pytest.mark.parametrize(
    "accept", ["image/png", "application/xml, text/html", "application/json;q=0", "text/csv;q=0, image/*", "text/plain"]
)
def test_accept_of_nothing_served_is_406_2050(api: httpx.Client, accept: str) -> None:
    assert_error(
        export(api, "/products", accept),
        406,
        "2050",
        mentions=["application/json", "application/x-ndjson", "text/csv"],
    )


def test_unknown_alias_is_404_before_negotiation(api: httpx.Client) -> None:
    assert_error(export(api, "/no-such-alias", "image/png"), 404, "007")


# --- NDJSON --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "-price,name"},
        {"filter[products.price]": '{"gte":"20","lt":"200"}', "sort": "name"},
        {"include": "productStocks"},
        {"filter[products.isActive]": "true", "sort": "-idProduct", "include": "productStocks"},
        {"filter[products.idProduct]": '{"lt":0}'},
        # Sorted by a field not shown: MariaDB's keyset batches still need it selected (plan.build).
        {"fields[products]": "sku", "sort": "-price,name"},
        {"filter[or]": '[{"products.price":{"lt":"20"}},{"products.isActive":"false"}]', "fields[products]": "name"},
    ],
    ids=["all", "sorted", "filtered", "include", "all-together", "empty", "sparse-sorted", "group-sparse"],
)
def test_ndjson_is_the_rows_of_the_page_in_order(api: httpx.Client, batch_rows: int, params: dict[str, str]) -> None:
    expected = data(api, "/products", {**params, **ALL})
    assert len(expected) < 500  # the page holds every row
    assert ndjson_rows(export(api, "/products", NDJSON, params)) == expected


def test_ndjson_has_no_page_limit(cells: Backend, batch_rows: int) -> None:
    rows = ndjson_rows(export(cells.client, "/export-cells", NDJSON))
    assert [row["id"] for row in rows] == list(range(1, CELL_ROWS + 1))
    assert rows[:500] == data(cells.client, "/export-cells", ALL)
    assert rows[1] == {"id": 2, "label": "a,b", "flag": True, "doc": cell_row(2)["doc"], "amount": "0.50"}


# --- CSV -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{}, {"sort": "-price", "filter[products.name]": '{"like":"%a%"}'}], ids=["all", "filtered"]
)
def test_csv_is_the_rows_of_the_page_as_cells(api: httpx.Client, batch_rows: int, params: dict[str, str]) -> None:
    expected = data(api, "/products", {**params, **ALL})
    table = csv_table(export(api, "/products", CSV, params))
    assert table[0] == list(expected[0])
    assert table[1:] == [[cell_text(value) for value in row.values()] for row in expected]


def test_csv_quotes_as_rfc_4180(cells: Backend, batch_rows: int) -> None:
    response = export(cells.client, "/export-cells", CSV, {"filter[export-cells.id]": '{"lte":9}'})
    lines = response.content.split(b"\r\n")
    assert lines[0] == b"id,label,flag,doc,amount"
    doc = b'"{""n"":2,""tags"":[""x"",""y, z""],""q"":""a \\""quote\\""""}"'
    assert lines[1] == b"1,plain,false," + doc.replace(b":2,", b":1,") + b",0.25"
    assert lines[2] == b'2,"a,b",true,' + doc + b",0.50"
    assert lines[3] == b'3,"say ""hi""",,' + doc.replace(b":2,", b":3,") + b",0.75"
    assert lines[4] == b'4,"two\nlines",true,,1.00'
    assert lines[5] == b'5,"carriage\rreturn",false,' + doc.replace(b":2,", b":5,") + b","
    assert lines[6] == b"6,,," + doc.replace(b":2,", b":6,") + b",1.50"  # empty text and NULL: both empty
    assert lines[7] == b"7,,false," + doc.replace(b":2,", b":7,") + b",1.75"
    assert lines[8] == "8,ünïcode ✓,true,,2.00".encode()
    assert lines[9] == b"9, padded ,," + doc.replace(b":2,", b":9,") + b",2.25"
    assert lines[10] == b""  # the last row ends with CRLF too
    assert len(lines) == 11


def test_csv_of_every_row_parses_back(cells: Backend, batch_rows: int) -> None:
    table = csv_table(export(cells.client, "/export-cells", CSV))
    assert len(table) == 1 + CELL_ROWS
    for row, i in zip(table[1:], range(1, CELL_ROWS + 1), strict=True):
        want = cell_row(i)
        amount = "" if want["amount"] is None else format(want["amount"].quantize(Decimal("0.01")), "f")
        expected = {k: cell_text(v) for k, v in want.items()} | {"amount": amount}
        assert row == list(expected.values())


def test_csv_with_include_is_2051(api: httpx.Client) -> None:
    assert_error(
        export(api, "/products", CSV, {"include": "productStocks"}), 400, "2051", mentions=["application/x-ndjson"]
    )


def test_ndjson_without_rows_is_empty_and_csv_is_its_header(api: httpx.Client) -> None:
    nothing = {"filter[countries.iso2Code]": "ZZ"}
    assert export(api, "/countries", NDJSON, nothing).content == b""
    names = list(data(api, "/countries", {"page[limit]": "1"})[0])
    assert export(api, "/countries", CSV, nothing).content == (",".join(names) + "\r\n").encode()


# --- what an export refuses, as JSON errors before the first byte ----------------------------------------------


@pytest.mark.parametrize("accept", [NDJSON, CSV])
@pytest.mark.parametrize(
    ("name", "value"),
    [("page[limit]", "10"), ("page[offset]", "0"), ("page[cursor]", "")],
    ids=["limit", "offset", "cursor"],
)
def test_export_refuses_paging_with_2017(api: httpx.Client, accept: str, name: str, value: str) -> None:
    response = export(api, "/products", accept, {name: value})
    assert_error(response, 400, "2017", mentions=[name, accept])


@pytest.mark.parametrize("accept", [NDJSON, CSV])
@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"filter[products.nope]": "1"}, 400, "1315"),
        ({"sort": "nope"}, 400, "2005"),
        ({"filter[products.price]": '{"gte":"abc"}'}, 400, "2001"),
        ({"include": "nope"}, 400, "1313"),
        ({"sort": "-price", "sort ": "x"}, 400, "2007"),
    ],
    ids=["filter-field", "sort-field", "filter-value", "relation", "unknown-parameter"],
)
def test_export_bad_read_is_the_json_error_of_the_page(
    api: httpx.Client, accept: str, params: dict[str, str], status: int, code: str
) -> None:
    if accept == CSV and "include" in params:
        code = "2051"  # the format is refused before the relation is looked up
    assert_error(export(api, "/products", accept, params), status, code)


def test_export_needs_the_read_scope(backend: Backend) -> None:
    response = httpx.get(backend.base_url + PREFIX + "/products", headers={"Accept": NDJSON})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"


# --- the stream: batches, clients that leave, databases that fail ---------------------------------------------


class Slowed:
    """Wraps ``execute.export._rendered``: counts batches, sleeps before each, fails the n-th if asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pause: float, fail_at: int | None = None) -> None:
        self.batches = 0
        self._pause = pause
        self._fail_at = fail_at
        self._real = export_module._rendered
        monkeypatch.setattr(export_module, "_rendered", self)

    async def __call__(self, *args: Any) -> Any:
        self.batches += 1
        await asyncio.sleep(self._pause)
        if self.batches == self._fail_at:
            raise OSError("connection reset by the database (injected)")
        return await self._real(*args)


def lingering(backend: Backend) -> list[Any]:
    """What still holds the export's snapshot or query in the database."""
    if backend.name == "postgresql":
        return backend.sql(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND (state <> 'idle' OR query ILIKE '%export_cell%' AND state <> 'idle')"
        )
    if backend.name == "mysql":
        return backend.sql(
            "SELECT ID, COMMAND, INFO FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
            "AND ID <> CONNECTION_ID() AND INFO LIKE '%export_cell%'"
        )
    # SQLite: a read transaction still open keeps a full checkpoint from finishing (busy = 1).
    busy = backend.sql("PRAGMA wal_checkpoint(TRUNCATE)")[0][0]
    return [] if busy == 0 else ["a reader holds the WAL"]


def wait_until_released(backend: Backend, within: float = 3.0) -> float:
    started = time.monotonic()
    found: list[Any] = []
    while time.monotonic() - started < within:
        found = lingering(backend)
        if not found:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"the export still holds the database {within}s after the client left: {found}")


@pytest.mark.parametrize("accept", [NDJSON, CSV])
def test_client_that_leaves_releases_the_cursor_at_once(
    cells: Backend, monkeypatch: pytest.MonkeyPatch, accept: str
) -> None:
    monkeypatch.setattr(export_module, "BATCH_ROWS", 10)
    slowed = Slowed(monkeypatch, pause=0.02)  # 124 batches: about 2.5 s for the whole export
    with (
        httpx.Client(base_url=cells.base_url, headers=cells.client.headers, timeout=10) as client,
        client.stream("GET", PREFIX + "/export-cells", headers={"Accept": accept}) as response,
    ):
        assert response.status_code == 200
        first = next(response.iter_raw())
        assert first
    left_at = slowed.batches
    released_after = wait_until_released(cells)
    time.sleep(0.2)
    assert slowed.batches <= left_at + 2, "the export went on after the client left"
    assert slowed.batches < CELL_ROWS // 10
    assert released_after < 1.0
    # The pool has its connection back: as many exports as the pool holds connections run at once.
    assert ndjson_rows(export(cells.client, "/export-cells", NDJSON, {"filter[export-cells.id]": '{"lte":3}'}))


def test_database_failure_mid_stream_breaks_the_stream_off(cells: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "BATCH_ROWS", 10)
    Slowed(monkeypatch, pause=0, fail_at=3)
    received = bytearray()
    with (
        httpx.Client(base_url=cells.base_url, headers=cells.client.headers, timeout=10) as client,
        client.stream("GET", PREFIX + "/export-cells", headers={"Accept": NDJSON}) as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_bytes():
                received += chunk
    lines = bytes(received).split(b"\n")
    assert len(lines) == 21 and lines[-1] == b""  # the two batches before the failure, whole
    assert [orjson.loads(line)["id"] for line in lines[:-1]] == list(range(1, 21))
    logged = SERVER_ERRORS.take()
    assert len(logged) == 1 and "StreamBroken('5002')" in logged[0], logged
    wait_until_released(cells)


def test_database_failure_before_the_first_byte_is_a_json_503(cells: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    Slowed(monkeypatch, pause=0, fail_at=1)
    response = cells.client.get(PREFIX + "/export-cells", headers={"Accept": CSV})
    assert_error(response, 503, "5002")
    assert response.headers["retry-after"]
    wait_until_released(cells)


@only_on("postgresql")
def test_postgresql_export_killed_in_the_database_breaks_the_stream_off(
    cells: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL runs each batch's FETCH when it is asked for, so ending the session mid-export fails the next
    one. (MariaDB sends a small result to the socket at once; its kill could only end a larger one.)"""
    monkeypatch.setattr(export_module, "BATCH_ROWS", 10)
    Slowed(monkeypatch, pause=0.02)
    kill = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND query ILIKE '%export_cell%'"
    )
    with (
        httpx.Client(base_url=cells.base_url, headers=cells.client.headers, timeout=10) as client,
        client.stream("GET", PREFIX + "/export-cells", headers={"Accept": NDJSON}) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_bytes()
        next(chunks)
        assert cells.sql(kill)
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    logged = SERVER_ERRORS.take()
    assert len(logged) == 1 and "StreamBroken('5002')" in logged[0], logged
    wait_until_released(cells)


def test_gzip_export_streams_compressed(cells: Backend) -> None:
    plain = export(cells.client, "/export-cells", NDJSON)
    response = export(cells.client, "/export-cells", NDJSON, **{"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers.get("content-length", 0)) == 0  # still chunked
    assert response.content == plain.content  # httpx decoded it
    assert len(response.read()) == len(plain.content)


def test_get_of_the_item_ignores_accept(api: httpx.Client) -> None:
    first = data(api, "/countries", {"page[limit]": "1"})[0]
    key = next(iter(first.values()))
    one = api.get(f"{PREFIX}/countries/{key}", headers={"Accept": CSV})
    assert one.status_code == 200 and one.headers["content-type"] == "application/json"
    assert one.json()["data"] == first


def test_openapi_describes_the_export(api: httpx.Client) -> None:
    document = api.get(PREFIX + "/openapi.json").json()
    listing = document["paths"]["/dynamic-entity/products"]["get"]
    content = listing["responses"]["200"]["content"]
    assert set(content) == {"application/json", NDJSON, CSV}
    assert content[NDJSON]["schema"] == {"$ref": "#/components/schemas/products"}
    assert "2050" in listing["responses"]["406"]["description"]
    one = document["paths"]["/dynamic-entity/products/{id}"]["get"]["responses"]
    assert set(one["200"]["content"]) == {"application/json"} and "406" not in one


@pytest.mark.parametrize("sort", ["flag,-amount", "-label,flag", "amount"])
def test_ndjson_order_with_ties_and_nulls_across_batches(cells: Backend, batch_rows: int, sort: str) -> None:
    """Batches continue where the last one ended (on MariaDB by keyset, like `page[cursor]`), whatever ties and
    NULLs the sort keys hold: no row lost, none twice, the order of the pages."""
    pages = [
        data(cells.client, "/export-cells", {"sort": sort, "page[limit]": "500", "page[offset]": str(start)})
        for start in (0, 500, 1000)
    ]
    expected = [row for page in pages for row in page]
    assert len(expected) == CELL_ROWS
    assert ndjson_rows(export(cells.client, "/export-cells", NDJSON, {"sort": sort})) == expected
