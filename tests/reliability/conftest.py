"""Fixtures of the reliability suite: its own PostgreSQL cluster, the fault proxy in front of it, the demo shop.

The suite runs with ``make test-faults`` (``pytest tests/reliability``), never in ``make test``: the pytest
section of ``pyproject.toml`` ignores this folder unless it is named on the command line. The session creates
one cluster (``cluster.Cluster``) and drops it at the end whatever happened; a cluster that cannot be created
fails the run, it is never skipped. After every test the proxy passes bytes again and the cluster runs, so a
test that failed half-way does not break the next one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.reliability.cluster import Cluster, ClusterError, drop_stale_clusters
from tests.reliability.faultproxy import FaultProxy, Mode
from tests.reliability.traffic import Shop, prepare_shop


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    try:
        drop_stale_clusters()
        made = Cluster.create()
    except (ClusterError, OSError, subprocess.SubprocessError) as exc:  # no tools, not root, no free port …
        pytest.fail(f"the reliability suite cannot create its PostgreSQL cluster: {exc}", pytrace=False)
    try:
        yield made
    finally:
        made.drop()


@pytest.fixture(scope="session")
def proxy(cluster: Cluster) -> Iterator[FaultProxy]:
    started = FaultProxy(cluster.port).start()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def shop(cluster: Cluster, proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    return prepare_shop(cluster, proxy, tmp_path_factory.mktemp("shop"))


@pytest.fixture(autouse=True)
def _repaired(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test: the proxy passes bytes and the cluster answers, whatever the test did to them."""
    yield
    if "proxy" in request.fixturenames:
        request.getfixturevalue("proxy").set_mode(Mode.PASS)
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").ensure_running()
