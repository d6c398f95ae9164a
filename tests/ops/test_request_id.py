"""``X-Request-Id`` and ``Server-Timing`` on every backend through the real HTTP stack, and the id in log lines.

The id is the client's when it sends a sane one, else the server's own; it comes back on the answer and in
every item of an error body. ``Server-Timing`` names where the time of an answer went.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re

import httpx
import orjson
import pytest

from dxapi.logs import StderrHandler
from dxapi.observe import Observed
from tests.conftest import Backend

PREFIX = "/dynamic-entity"
GENERATED = re.compile(r"[0-9a-f]{16}")
TIMING = re.compile(r"([a-z]+);dur=([0-9]+\.[0-9]{2})")


def test_a_sane_client_id_is_kept_and_echoed(backend: Backend) -> None:
    sent = "9f1c2a7e-5b9d-4c41-a0a5-4bd1d31a7f00"
    response = backend.client.get(f"{PREFIX}/countries", params={"page[limit]": "1"}, headers={"X-Request-Id": sent})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == sent


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "semi;colon", "new\u00e9line"])
def test_a_missing_or_unfit_id_is_replaced_by_one_of_the_servers(backend: Backend, sent: str | None) -> None:
    headers = {"X-Request-Id": sent.encode()} if sent is not None else {}
    first = backend.client.get(f"{PREFIX}/countries", params={"page[limit]": "1"}, headers=headers)
    second = backend.client.get(f"{PREFIX}/countries", params={"page[limit]": "1"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert GENERATED.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_every_item_of_an_error_body_names_the_request(backend: Backend) -> None:
    response = backend.client.get(
        f"{PREFIX}/countries", params={"page[limit]": "0", "sort": "nope"}, headers={"X-Request-Id": "bug-4711"}
    )
    assert response.status_code == 400
    body = response.json()
    assert len(body) >= 1
    assert [item["requestId"] for item in body] == ["bug-4711"] * len(body)
    # Errors from outside the data endpoints too: no credentials, an unknown route.
    refused = httpx.get(f"{backend.base_url}{PREFIX}/countries", headers={"X-Request-Id": "anon-1"})
    assert refused.status_code == 401 and refused.json()[0]["requestId"] == "anon-1"
    missing = backend.client.get("/no/such/route", headers={"X-Request-Id": "route-1"})
    assert missing.status_code == 404 and missing.json()[0]["requestId"] == "route-1"


def test_server_timing_names_the_phases_of_a_read(backend: Backend) -> None:
    listed = backend.client.get(f"{PREFIX}/countries", params={"page[limit]": "1"}).json()["data"]
    identifier = listed[0]["idCountry"]
    response = backend.client.get(f"{PREFIX}/countries/{identifier}")
    assert response.status_code == 200
    phases = {name: float(ms) for name, ms in TIMING.findall(response.headers["server-timing"])}
    assert list(phases) == ["auth", "plan", "db", "render", "total"], response.headers["server-timing"]
    assert all(ms >= 0 for ms in phases.values())
    parts = phases["auth"] + phases["plan"] + phases["db"] + phases["render"]
    assert parts <= phases["total"] + 0.05  # rounding of each part to 1/100 ms
    assert phases["db"] > 0


def test_server_timing_of_a_write_and_of_a_refusal(backend: Backend) -> None:
    refused = httpx.get(f"{backend.base_url}{PREFIX}/countries")
    names = [name for name, _ in TIMING.findall(refused.headers["server-timing"])]
    assert names == ["render", "total"]  # refused before authentication ended: nothing else ran
    bad = backend.client.post(f"{PREFIX}/countries", json={"data": [{"no_such_field": 1}]})
    assert bad.status_code == 400
    assert [name for name, _ in TIMING.findall(bad.headers["server-timing"])][:1] == ["auth"]


def test_log_lines_written_while_a_request_runs_carry_its_id() -> None:
    """Through the real ASGI layer and dxapi's handler in its JSON form, without a server."""
    stream = io.StringIO()
    handler = StderrHandler(stream, json=True)
    logger = logging.getLogger("dxapi.ops-test")
    logger.addHandler(handler)
    logger.propagate = False

    async def app(scope: object, receive: object, send: object) -> None:
        logger.warning("inside %s", "the request")
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [(b"x-request-id", b"trace-77")]}
    try:
        asyncio.run(Observed(app)(scope, receive, send))  # type: ignore[arg-type]
        logger.warning("outside any request")
    finally:
        logger.removeHandler(handler)
    inside, outside = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert inside["requestId"] == "trace-77" and inside["message"] == "inside the request"
    assert inside["level"] == "WARNING" and inside["logger"] == "dxapi.ops-test"
    assert "requestId" not in outside
    assert (b"x-request-id", b"trace-77") in sent[0]["headers"]  # type: ignore[operator]
