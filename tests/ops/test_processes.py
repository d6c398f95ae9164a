"""Real ``dxapi serve`` processes: the JSON access log, and metrics summed over two workers on a port of
their own (prometheus-client's multiprocess mode in the directory ``dxapi serve`` makes).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from tests.conftest import Backend, _free_port
from tests.ops.conftest import samples, value
from tests.reload.processes import ServerProcess

PREFIX = "/dynamic-entity"
TOKEN = "ops-scrape-token"


def _secret(backend: Backend) -> str:
    assert backend.settings.jwt_secret is not None
    return backend.settings.jwt_secret.get_secret_value()


def test_the_json_access_log_has_a_line_per_request(backend: Backend, tmp_path: Path) -> None:
    server = ServerProcess(
        "json-log",
        backend.url,
        _secret(backend),
        tmp_path,
        {"DXAPI_LOG_FORMAT": "json", "DXAPI_LOG_LEVEL": "info"},
    )
    try:
        server.wait_ready()
        headers = {"Authorization": backend.client.headers["authorization"], "X-Request-Id": "ops-access-1"}
        listed = httpx.get(f"{server.base_url}{PREFIX}/countries", params={"page[limit]": "2"}, headers=headers)
        assert listed.status_code == 200 and len(listed.json()["data"]) == 2
        headers["X-Request-Id"] = "ops-access-2"
        assert httpx.get(f"{server.base_url}{PREFIX}/no-such-alias", headers=headers).status_code == 404
    finally:
        server.stop()
    lines = [orjson.loads(line) for line in server.log_path.read_text().splitlines() if line.strip()]
    assert lines, "nothing logged"
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    access = {line["requestId"]: line for line in lines if line["logger"] == "dxapi.access" and "requestId" in line}
    read = access["ops-access-1"]
    assert read["principal"].startswith("client:")
    assert (read["entity"], read["method"], read["status"], read["rowsRead"], read["rowsWritten"]) == (
        "countries",
        "GET",
        200,
        2,
        0,
    )
    assert read["path"] == f"{PREFIX}/countries" and read["durationMs"] > 0
    unknown = access["ops-access-2"]
    assert (unknown["entity"], unknown["status"], unknown["rowsRead"]) == (None, 404, 0)


def test_metrics_on_their_own_port_sum_two_workers(backend: Backend, tmp_path: Path) -> None:
    port = _free_port()
    server = ServerProcess(
        "metrics",
        backend.url,
        _secret(backend),
        tmp_path,
        {"DXAPI_METRICS": "true", "DXAPI_METRICS_PORT": str(port), "DXAPI_METRICS_TOKEN": TOKEN},
        workers=2,
    )
    scrape_url = f"http://127.0.0.1:{port}/metrics"
    try:
        server.wait_ready()
        authorization = {"Authorization": backend.client.headers["authorization"]}
        for _ in range(40):  # a new connection each: the kernel spreads them over the workers
            response = httpx.get(
                f"{server.base_url}{PREFIX}/countries", params={"page[limit]": "1"}, headers=authorization
            )
            assert response.status_code == 200
        # The API's port does not answer for the metrics when they have a port of their own.
        assert httpx.get(f"{server.base_url}/metrics").status_code == 404
        refused = httpx.get(scrape_url)
        assert refused.status_code == 401 and refused.json()[0]["code"] == "4011"
        deadline = time.monotonic() + 5
        while True:
            scraped = samples(httpx.get(scrape_url, headers={"Authorization": f"Bearer {TOKEN}"}).text)
            counted = value(scraped, "dxapi_requests_total", entity="countries", method="GET", status="2xx")
            # Pools are sampled once a second by each worker; on the servers each worker polls the configuration
            # on a control connection of its own, so the sum over two workers is at least two.
            pools_seen = backend.name == "sqlite" or value(scraped, "dxapi_db_pool_open", pool="control") >= 2
            if (counted == 40 and pools_seen) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counted == 40
        assert pools_seen, {k: v for k, v in scraped.items() if k[0].startswith("dxapi_db_pool")}
        assert value(scraped, "dxapi_rows_read_total", entity="countries") == 40
    finally:
        server.stop()
