"""Health endpoints for load balancers.

``/health/live`` answers 200 whenever the process does; ``/health/ready`` answers 200 with the loaded
``snapshotVersion`` while the database answers, and 503 with a readable reason while it does not. Riding out
a database restart is shown in ``tests/reliability/test_database_down.py``, on a PostgreSQL cluster of that
suite's own (``make test-faults``): a test here must never stop the shared server.
"""

from __future__ import annotations

import httpx

from tests.conftest import Backend


def test_live_and_ready(backend: Backend) -> None:
    with httpx.Client(base_url=backend.base_url, timeout=10) as anonymous:  # probes carry no credentials
        live = anonymous.get("/health/live")
        assert live.status_code == 200 and live.json() == {"status": "ok"}, live.text
        ready = anonymous.get("/health/ready")
    assert ready.status_code == 200, ready.text
    document = ready.json()
    assert document["status"] == "ok" and document["problemCount"] == 0, document
    assert isinstance(document["snapshotVersion"], int) and document["snapshotVersion"] >= 1, document
    assert isinstance(document["unavailableEntityCount"], int), document
    # The details are for operators (any valid credentials), see test_health_hardening.py.
    detailed = backend.client.get("/health/ready").json()
    assert detailed["status"] == "ok" and detailed["problems"] == [], detailed
    assert detailed["snapshotVersion"] == document["snapshotVersion"], detailed
    assert isinstance(detailed["unavailableEntities"], dict), detailed
    assert detailed["listening"] is (backend.name == "postgresql"), detailed
