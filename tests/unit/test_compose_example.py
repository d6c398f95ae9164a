"""``examples/docker-compose.yml`` checked without Docker: the settings it names, the files it mounts, the health
checks its start order waits on, and the wiring between the api, PgBouncer, the replica and Prometheus."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from dxapi.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COMPOSE = EXAMPLES / "docker-compose.yml"

# Settings that branches merged in parallel are adding (metrics, JSON logs, rate limits, Redis). Delete this
# set, and its use below, once dxapi/settings.py has them all.


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def _api_environment(services: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in services["api"]["environment"].items()}


def _settings_fields() -> set[str]:
    return {f"DXAPI_{name.upper()}" for name in Settings.model_fields}


def test_every_dxapi_variable_it_names_is_a_setting() -> None:
    named = set(re.findall(r"\bDXAPI_[A-Z0-9_]+\b", COMPOSE.read_text()))
    assert {"DXAPI_DATABASE_URL", "DXAPI_PGBOUNCER", "DXAPI_LISTEN_URL", "DXAPI_READ_REPLICA_URLS"} <= named
    assert named - _settings_fields() == set()


def test_the_api_environment_is_accepted_by_the_settings(services: dict[str, Any]) -> None:
    known = _settings_fields()
    values = {
        name[len("DXAPI_") :].lower(): value for name, value in _api_environment(services).items() if name in known
    }
    settings = Settings(**values)
    assert settings.pgbouncer is True
    assert settings.workers == 2
    assert settings.read_replica_urls == ["postgresql://postgres:change-me@pgbouncer:6432/shop_replica"]


def test_every_file_it_mounts_or_builds_from_exists(services: dict[str, Any]) -> None:
    mounted = set()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (EXAMPLES / source).exists(), f"{source} is mounted but missing"
            mounted.add(source)
    assert mounted == {
        "./",
        "./compose/primary-init.sh",
        "./compose/replica-start.sh",
        "./compose/pgbouncer.ini",
        "./compose/userlist.txt",
        "./compose/prometheus.yml",
    }
    assert services["api"]["build"] == ".."
    assert (EXAMPLES / ".." / "Dockerfile").is_file()
    pgbouncer_build = services["pgbouncer"]["build"]
    assert (EXAMPLES / pgbouncer_build["context"] / pgbouncer_build["dockerfile"]).is_file()


def test_every_awaited_service_has_a_health_check(services: dict[str, Any]) -> None:
    awaited = set()
    for name, service in services.items():
        for dependency, wanted in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on an unknown service {dependency}"
            if wanted["condition"] == "service_healthy":
                awaited.add(dependency)
    assert awaited == {"db", "replica", "pgbouncer", "redis", "api"}
    for name in awaited:
        if "healthcheck" not in services[name]:  # then the image it builds must have one
            assert "HEALTHCHECK " in (EXAMPLES / services[name]["build"] / "Dockerfile").read_text(), name


def test_pgbouncer_pools_by_transaction_for_the_api_urls(services: dict[str, Any]) -> None:
    ini = configparser.ConfigParser()
    ini.read(EXAMPLES / "compose" / "pgbouncer.ini")
    assert ini["pgbouncer"]["pool_mode"] == "transaction"
    databases = {name: dict(part.split("=", 1) for part in value.split()) for name, value in ini["databases"].items()}
    env = _api_environment(services)
    assert env["DXAPI_PGBOUNCER"] == "true"
    pooled_to = {}
    for name in ("DXAPI_DATABASE_URL", "DXAPI_READ_REPLICA_URLS"):
        url = urlsplit(env[name])
        assert (url.hostname, url.port) == ("pgbouncer", int(ini["pgbouncer"]["listen_port"])), name
        target = databases[url.path.lstrip("/")]
        pooled_to[name] = (target["host"], target["port"], target["dbname"])
    assert pooled_to == {
        "DXAPI_DATABASE_URL": ("db", "5432", "shop"),
        "DXAPI_READ_REPLICA_URLS": ("replica", "5432", "shop"),
    }
    # LISTEN needs a session on the primary itself.
    listen = urlsplit(env["DXAPI_LISTEN_URL"])
    assert (listen.hostname, listen.port, listen.path) == ("db", 5432, "/shop")
    # So does `dxapi init` (the reason is in the compose file).
    assert services["api"]["command"][2] == 'dxapi --database-url "$$DXAPI_LISTEN_URL" init && exec dxapi serve'
    # PgBouncer logs in to the servers with the password of its user list: the primary's.
    users = dict(shlex.split(line) for line in (EXAMPLES / "compose" / "userlist.txt").read_text().splitlines())
    url = urlsplit(env["DXAPI_DATABASE_URL"])
    assert users == {url.username: url.password}
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] == url.password


def test_the_replica_copies_with_the_role_and_slot_the_primary_creates(services: dict[str, Any]) -> None:
    init = (EXAMPLES / "compose" / "primary-init.sh").read_text()
    start = (EXAMPLES / "compose" / "replica-start.sh").read_text()
    assert "CREATE ROLE replicator WITH REPLICATION LOGIN" in init
    assert "host replication replicator all scram-sha-256" in init
    assert "pg_create_physical_replication_slot('replica')" in init
    assert "--username=replicator" in start
    assert "--slot=replica" in start
    assert "--write-recovery-conf" in start
    assert services["replica"]["environment"]["PGPASSWORD"] == services["db"]["environment"]["REPLICATION_PASSWORD"]
    assert services["db"]["command"] == ["postgres", "-c", "wal_level=replica"]


def test_prometheus_scrapes_the_api_metrics_port_with_its_token(services: dict[str, Any]) -> None:
    config = yaml.safe_load((EXAMPLES / "compose" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    env = _api_environment(services)
    assert job["static_configs"] == [{"targets": [f"api:{env['DXAPI_METRICS_PORT']}"]}]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/prometheus/metrics-token"}
    prometheus = services["prometheus"]
    # The token file is written from the same variable, with the same default, as the api's token.
    assert prometheus["environment"]["DXAPI_METRICS_TOKEN"] == env["DXAPI_METRICS_TOKEN"]
    assert env["DXAPI_METRICS_TOKEN"] == "${DXAPI_METRICS_TOKEN:-change-me}"
    script = prometheus["entrypoint"][2]
    assert "printf '%s' \"$$DXAPI_METRICS_TOKEN\" > /prometheus/metrics-token &&" in script
    assert "--config.file=/etc/prometheus/prometheus.yml" in script
    assert "./compose/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]


def _inline_scripts(services: dict[str, Any]) -> dict[str, str]:
    """The ``sh -c`` scripts of the command and entrypoint lines, as the container's shell gets them."""
    found = {}
    for name, service in services.items():
        for key in ("command", "entrypoint"):
            line = service.get(key)
            if isinstance(line, list) and len(line) == 3 and line[0].endswith("sh") and line[1] == "-c":
                found[f"{name} {key}"] = line[2].replace("$$", "$")  # Compose's escape for a literal $
    return found


def test_its_shell_scripts_parse(services: dict[str, Any]) -> None:
    scripts = sorted((EXAMPLES / "compose").glob("*.sh"))
    assert [script.name for script in scripts] == ["primary-init.sh", "replica-start.sh"]
    for script in scripts:
        checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=10)
        assert (checked.returncode, checked.stderr) == (0, ""), script.name
    inline = _inline_scripts(services)
    assert sorted(inline) == ["api command", "prometheus entrypoint"]
    for name, text in inline.items():
        checked = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True, timeout=10)
        assert (checked.returncode, checked.stderr) == (0, ""), name
