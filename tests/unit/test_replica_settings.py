"""Replicas, PgBouncer and the direct listener are PostgreSQL's: refused at start-up elsewhere, by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dxapi.cli import main
from dxapi.settings import Settings

REPLICA = "postgresql://127.0.0.1:5433/shop"


@pytest.mark.parametrize(
    ("database_url", "setting", "value"),
    [
        ("sqlite:///shop.db", "read_replica_urls", REPLICA),
        ("mysql://root@127.0.0.1/shop", "read_replica_urls", REPLICA),
        ("sqlite:///shop.db", "pgbouncer", True),
        ("mariadb://root@127.0.0.1/shop", "listen_url", REPLICA),
    ],
    ids=["replicas-sqlite", "replicas-mysql", "pgbouncer-sqlite", "listen-mariadb"],
)
def test_postgresql_only_settings_are_refused_on_other_backends(database_url: str, setting: str, value: object) -> None:
    with pytest.raises(ValidationError, match=f"DXAPI_{setting.upper()}: PostgreSQL only"):
        Settings(database_url=database_url, **{setting: value})


def test_replica_urls_must_be_postgresql_and_are_split_at_commas() -> None:
    settings = Settings(database_url="postgresql://h/db", read_replica_urls=f"{REPLICA}, postgresql://h2/db")
    assert settings.read_replica_urls == [REPLICA, "postgresql://h2/db"]
    with pytest.raises(ValidationError, match="PostgreSQL URLs only"):
        Settings(database_url="postgresql://h/db", read_replica_urls="mysql://h/db")


def test_the_command_line_names_the_refused_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DXAPI_PGBOUNCER", "true")
    assert main(["--database-url", "sqlite:///shop.db", "serve"]) == 1
    assert capsys.readouterr().err == (
        "error: DXAPI_PGBOUNCER: PostgreSQL only, and DXAPI_DATABASE_URL is not a PostgreSQL URL\n"
    )
