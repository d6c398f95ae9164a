"""The harness itself: a server error fails the test during which it was logged."""

from __future__ import annotations

import logging

from tests.conftest import SERVER_ERRORS


def test_server_errors_are_collected_from_dxapi_and_uvicorn() -> None:
    logging.getLogger("dxapi.execute").error("unexpected database error")
    logging.getLogger("uvicorn.error").error("Exception in ASGI application")
    logging.getLogger("httpx").error("a client-side error is not the server's")
    # Taken here, so the autouse guard sees nothing; left in place it would fail this test.
    assert SERVER_ERRORS.take() == [
        "dxapi.execute: unexpected database error",
        "uvicorn.error: Exception in ASGI application",
    ]


def test_warnings_are_not_server_errors() -> None:
    logging.getLogger("dxapi.reload").warning("reload failed, keeping the old snapshot")
    assert SERVER_ERRORS.take() == []
