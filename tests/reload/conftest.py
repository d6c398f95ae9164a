"""Ordering for the process-level reload suite: a test that stops the shared PostgreSQL runs last.

``@pytest.mark.stops_database`` marks such a test. It is moved behind every other collected test (of the
whole session, not only of this folder) after pytest's own fixture-based reordering, so nothing else ever
runs while the database is down or restarting.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stops_database: stops and restarts the shared database; runs last")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = [item for item in items if item.get_closest_marker("stops_database") is not None]
    if last:
        items[:] = [item for item in items if item.get_closest_marker("stops_database") is None] + last
