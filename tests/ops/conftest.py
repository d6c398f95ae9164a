"""A second in-process server on each backend's database with metrics on, and a reader of what it exposes.

``Observed.scrape()`` parses ``/metrics`` with ``prometheus_client.parser`` — the parser Prometheus' own Python
client ships — into ``{(name, labels): value}``, so that a test compares samples before and after requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.conftest import Backend, _start_server

METRICS_TOKEN = "scrape-me-please"
Labels = frozenset[tuple[str, str]]


@dataclass
class Observed:
    backend: Backend
    base_url: str
    client: httpx.Client  # the backend's bearer token: the same signing secret

    def scrape(self) -> dict[tuple[str, Labels], float]:
        response = httpx.get(
            f"{self.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=")
        return samples(response.text)


def samples(text: str) -> dict[tuple[str, Labels], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scraped: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """One sample's value; 0 for a series that does not exist yet (a counter before its first event)."""
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def observed(backend: Backend) -> Iterator[Observed]:
    settings = backend.settings.model_copy(update={"metrics": True, "metrics_token": SecretStr(METRICS_TOKEN)})
    server, thread, base_url = _start_server(settings)
    headers = {"Authorization": backend.client.headers["authorization"]}
    try:
        with httpx.Client(base_url=base_url, timeout=30, headers=headers) as client:
            yield Observed(backend, base_url, client)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
