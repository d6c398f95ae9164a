"""``request.accept.parse_accept``: the served type an ``Accept`` header asks for, or 406 ``2050``."""

from __future__ import annotations

import pytest

from dxapi.errors import ApiError
from dxapi.request.accept import CSV, JSON, NDJSON, parse_accept


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("application/json; charset=utf-8", JSON),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
        ("application/x-ndjson", NDJSON),
        ("text/csv", CSV),
        ("text/*", CSV),
        ("text/*;q=0.9, application/x-ndjson;q=0.8", CSV),
        ("text/csv;q=0.5, application/x-ndjson", NDJSON),
        ("*/*;q=0.1, text/csv", CSV),
        ("text/csv, */*", CSV),  # equal q: the more specific range wins
        ("application/x-ndjson, application/json", JSON),  # equal q and specificity: JSON first
        ("application/*, text/csv;q=0.99", JSON),
        ("text/csv;q=bad, application/x-ndjson;q=0.1", NDJSON),  # a malformed q excludes its range
        ("text/csv;q=2, application/x-ndjson;q=0.1", NDJSON),  # so does one outside 0..1
        (" , ,text/csv", CSV),
        (",", JSON),  # names nothing: as no header
    ],
)
def test_chosen(header: str | None, chosen: str) -> None:
    assert parse_accept(header) == chosen


@pytest.mark.parametrize(
    "header", ["image/png", "text/plain", "application/json;q=0", "*/*;q=0", "text/csv;q=0, application/xml"]
)
def test_nothing_served_is_2050(header: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_accept(header)
    item = raised.value.items[0]
    assert (item.code, item.status) == ("2050", 406)
    assert "application/json, application/x-ndjson, text/csv" in item.message
