"""The real ``dxapi`` command as a subprocess: ``init``, ``config import|export|check`` and ``--database-url``.

Each test gets a fresh SQLite file holding the demo shop (50 products); the contract tests also run against a
throw-away PostgreSQL database when ``postgresql`` is listed in ``DXAPI_TEST_BACKENDS``. The contract (DESIGN
§9): settings from the environment, ``--database-url`` overrides, and a failure exits non-zero with a one-line
reason (configuration problems: one line each) — never a traceback.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dxapi.db import create_engine
from dxapi.demo import build_shop, create_shop
from dxapi.registry.store import ensure_schema, parse_import, save_entities
from dxapi.registry.tables import dx_audit, dx_config_version, dx_entity, dx_relation
from tests.conftest import BACKENDS, SERVER_URLS, _create_database, _drop_database, shop_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "shop-config.json"
_SCRIPT = Path(sys.executable).parent / "dxapi"
DXAPI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dxapi.cli"]

TARGETS = ["sqlite"] + (["postgresql"] if "postgresql" in BACKENDS else [])


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


def _command(args: tuple[str, ...], url: str | None, env_url: str | None) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXAPI_")}
    if env_url is not None:
        env["DXAPI_DATABASE_URL"] = env_url
    return [*DXAPI, *(["--database-url", url] if url else []), *args], env


def run(*args: str, url: str | None = None, env_url: str | None = None, cwd: Path) -> Result:
    """Run ``dxapi`` with a clean ``DXAPI_*`` environment; ``url`` goes to ``--database-url``."""
    command, env = _command(args, url, env_url)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def run_many(calls: dict[str, tuple[tuple[str, ...], str | None]], cwd: Path) -> dict[str, Result]:
    """Run independent read-only or failing commands side by side (each one pays the interpreter start-up)."""
    started = {}
    for name, (args, url) in calls.items():
        command, env = _command(args, url, None)
        started[name] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
        )
    results = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=60)
        results[name] = Result(process.returncode, out, err)
    return results


def assert_one_line_failure(result: Result) -> str:
    last = result.err_lines[-1] if result.err_lines else ""
    assert result.code != 0, result
    assert "Traceback" not in result.err, f"a traceback instead of one line; it ends with: {last}"
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("error: ")
    return line


@dataclass
class Target:
    name: str
    url: str
    cwd: Path

    def dxapi(self, *args: str) -> Result:
        return run(*args, url=self.url, cwd=self.cwd)

    def sql(self, statement: str | sa.Executable) -> list[sa.Row[Any]]:
        async def go() -> list[sa.Row[Any]]:
            engine = create_engine(self.url)
            try:
                async with engine.begin() as conn:
                    result = await conn.execute(sa.text(statement) if isinstance(statement, str) else statement)
                    return list(result.all()) if result.returns_rows else []
            finally:
                await engine.dispose()

        return asyncio.run(go())

    def configure(self) -> None:
        """Import the example in-process (quicker than a subprocess where the import is not under test)."""

        async def go() -> None:
            engine = create_engine(self.url)
            try:
                await ensure_schema(engine)
                await save_entities(engine, parse_import(shop_config()), actor="test", action="import")
            finally:
                await engine.dispose()

        asyncio.run(go())

    def state(self) -> dict[str, Any]:
        return {
            "entities": [tuple(r) for r in self.sql(sa.select(dx_entity).order_by(dx_entity.c.id))],
            "relations": [tuple(r) for r in self.sql(sa.select(dx_relation).order_by(dx_relation.c.id))],
            "version": self.sql(sa.select(dx_config_version.c.version))[0][0],
            "audit": self.sql(sa.select(sa.func.count()).select_from(dx_audit))[0][0],
        }

    def tables(self) -> set[str]:
        async def go() -> set[str]:
            engine = create_engine(self.url)
            try:
                async with engine.connect() as conn:
                    return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
            finally:
                await engine.dispose()

        return asyncio.run(go())


async def _create_pg_database() -> str:
    """A throw-away PostgreSQL database (the harness's own helper) with a small shop in it."""
    url = await _create_database("postgresql")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(build_shop, 50, 7)
    finally:
        await engine.dispose()
    return url


def _sqlite_shop(directory: Path) -> str:
    url = f"sqlite:///{directory / 'shop.db'}"
    engine = sa.create_engine(url)
    try:
        create_shop(engine, products=50)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Target:
    return Target("sqlite", _sqlite_shop(tmp_path), tmp_path)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target("sqlite", _sqlite_shop(tmp_path), tmp_path)
        return
    url = asyncio.run(_create_pg_database())
    try:
        yield Target("postgresql", url, tmp_path)
    finally:
        asyncio.run(_drop_database("postgresql", url))


def write_json(path: Path, document: Any) -> Path:
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path


# --- init ----------------------------------------------------------------------------------------------------


def test_init_twice_is_idempotent(target: Target) -> None:
    first = target.dxapi("init")
    assert (first.code, first.err) == (0, "")
    assert first.out.startswith("dxapi tables are ready\n")
    # development: a signing secret is generated once, next to where dxapi runs, readable by its owner only
    secret_file = target.cwd / ".dxapi" / "jwt-secret"
    assert "generated a token signing secret" in first.out or secret_file.exists()
    assert secret_file.stat().st_mode & 0o077 == 0
    assert {"dx_entity", "dx_relation", "dx_config_version", "dx_audit", "dx_user", "dx_client"} <= target.tables()
    state = target.state()
    assert state == {"entities": [], "relations": [], "version": 1, "audit": 0}
    second = target.dxapi("init")
    assert (second.code, second.out, second.err) == (0, "dxapi tables are ready\n", "")
    assert target.state() == state


def test_init_keeps_an_existing_configuration(sqlite_target: Target) -> None:
    sqlite_target.configure()
    state = sqlite_target.state()
    assert sqlite_target.dxapi("init").code == 0
    assert sqlite_target.state() == state


# --- import / export -----------------------------------------------------------------------------------------


def test_import_prints_the_version(target: Target) -> None:
    result = target.dxapi("config", "import", str(EXAMPLE))
    assert (result.code, result.out, result.err) == (0, "imported 5 entities; configuration version 2\n", "")
    state = target.state()
    assert state["version"] == 2 and state["audit"] == 5 and len(state["entities"]) == 5
    again = target.dxapi("config", "import", str(EXAMPLE))
    assert (again.code, again.out) == (0, "imported 5 entities; configuration version 3\n")
    assert len(target.state()["entities"]) == 5  # an upsert, not a second copy


def test_export_round_trips(target: Target) -> None:
    target.configure()
    both = run_many(
        {
            "stdout": (("config", "export"), target.url),
            "file": (("config", "export", "--output", str(target.cwd / "export.json")), target.url),
        },
        target.cwd,
    )
    exported, to_file = both["stdout"], both["file"]
    assert exported.code == 0 and exported.err == ""
    # The export is the normalised example: entries by alias, every default written out.
    assert orjson.loads(exported.out) == sorted(shop_config(), key=lambda e: e["tableAlias"])
    assert (to_file.code, to_file.out) == (0, "")
    assert (target.cwd / "export.json").read_text() == exported.out
    reimported = target.dxapi("config", "import", str(target.cwd / "export.json"))
    assert reimported.code == 0, reimported.err
    assert target.dxapi("config", "export").out == exported.out


# --- check ---------------------------------------------------------------------------------------------------


def test_check_reports_one_line_per_problem_after_columns_are_dropped(target: Target) -> None:
    target.configure()
    good = target.dxapi("config", "check")
    assert (good.code, good.out, good.err) == (0, "5 entities checked, no problems\n", "")
    target.sql("ALTER TABLE shop_stock DROP COLUMN quantity")
    target.sql("ALTER TABLE shop_country DROP COLUMN postal_code_regex")
    bad = target.dxapi("config", "check")
    assert bad.code == 1
    assert "Traceback" not in bad.err
    lines = [line.removeprefix("error: ") for line in (bad.out + bad.err).splitlines() if line.strip()]
    assert sorted(lines) == [
        "`countries`: field `postal_code_regex`: no such column in table `shop_country`",
        "`stocks`: field `quantity`: no such column in table `shop_stock`",
    ]


# --- failures ------------------------------------------------------------------------------------------------


def _bad_document() -> list[dict[str, Any]]:
    entries = {e["tableAlias"]: e for e in shop_config()}
    countries = entries["countries"]
    countries["definition"]["fields"][3]["fieldName"] = "country_name"  # no such column
    stocks = entries["stocks"]
    stocks["definition"]["fields"][2]["validation"]["maxLength"] = 65  # warehouse is VARCHAR(64)
    ghosts = {**entries["tax-rates"], "tableAlias": "ghosts", "tableName": "shop_ghost"}
    return [countries, entries["products"], stocks, ghosts]


def test_bad_import_reports_every_problem_and_changes_nothing(target: Target) -> None:
    target.configure()
    before = target.state()
    path = write_json(target.cwd / "bad.json", _bad_document())
    result = target.dxapi("config", "import", str(path))
    assert result.code == 1
    assert result.out == ""
    assert "Traceback" not in result.err
    assert sorted(result.err_lines) == [
        "error: `countries`: field `country_name`: no such column in table `shop_country`",
        "error: `ghosts`: table `shop_ghost` does not exist",
        "error: `stocks`: field `warehouse`: maxLength 65 exceeds the column's length 64",
    ]
    assert target.state() == before


def test_bad_import_on_an_unconfigured_database_writes_no_configuration(sqlite_target: Target) -> None:
    path = write_json(sqlite_target.cwd / "bad.json", _bad_document())
    result = sqlite_target.dxapi("config", "import", str(path))
    assert result.code == 1
    # Also reported: relations to entities the file does not bring along (nothing is configured yet).
    assert {
        "error: `countries`: field `country_name`: no such column in table `shop_country`",
        "error: `ghosts`: table `shop_ghost` does not exist",
        "error: `stocks`: field `warehouse`: maxLength 65 exceeds the column's length 64",
        "error: `countries`: relation `countryTaxRates`: child entity `tax-rates` is not configured",
    } <= set(result.err_lines)
    assert sqlite_target.state() == {"entities": [], "relations": [], "version": 1, "audit": 0}


def test_schema_problems_report_every_entry(sqlite_target: Target) -> None:
    document = shop_config()
    document[0]["definition"]["fields"][0]["isEditible"] = True
    document[2]["isActive"] = "yes"
    document[4]["tableAlias"] = "stock items"
    result = sqlite_target.dxapi("config", "import", str(write_json(sqlite_target.cwd / "bad.json", document)))
    assert result.code == 1 and result.out == ""
    assert "Traceback" not in result.err
    lines = result.err_lines
    assert lines[0].startswith("error: entry[0]: definition.fields[0]: ")
    assert lines[1].startswith("error: entry[2]: isActive: ")
    assert lines[2].startswith("error: `stock items`: Resource name `stock items` is not valid.")
    # What the refused entries leave behind is reported too: relations to the entities that did not parse.
    assert all("is not configured" in line for line in lines[3:]), lines
    assert "dx_entity" not in sqlite_target.tables()  # refused before the database was touched


def test_schema_and_database_problems_are_reported_together(sqlite_target: Target) -> None:
    # "reports every problem": a malformed entry must not hide a missing column in another one.
    document = shop_config()
    document[0]["definition"]["fields"][0]["isEditible"] = True
    document[1]["definition"]["fields"][2]["fieldName"] = "no_such_column"
    result = sqlite_target.dxapi("config", "import", str(write_json(sqlite_target.cwd / "bad.json", document)))
    assert result.code == 1
    assert len(result.err_lines) == 2, result.err_lines
    assert any("no_such_column" in line for line in result.err_lines)


def test_same_new_alias_twice_is_refused_cleanly(sqlite_target: Target) -> None:
    stocks = next(e for e in shop_config() if e["tableAlias"] == "stocks")
    path = write_json(sqlite_target.cwd / "twice.json", [stocks, stocks])
    line = assert_one_line_failure(sqlite_target.dxapi("config", "import", str(path)))
    assert "stocks" in line
    exported = sqlite_target.dxapi("config", "export")  # the import created the dx_* tables, and nothing else
    assert (exported.code, orjson.loads(exported.out)) == (0, [])


# One-line failures, run side by side against one unconfigured shop: (arguments, --database-url or None).
_FILES: dict[str, bytes | None] = {
    "missing.json": None,
    "broken.json": b'[{"tableName": ',
    "object.json": b'{"tableAlias": "x"}',
}
_URLS = {
    "postgresql-unreachable": "postgresql://postgres@127.0.0.1:1/nowhere",
    "mysql-unreachable": "mysql://root@127.0.0.1:1/nowhere",
    "unsupported-scheme": "oracle://x/y",
    "sqlite-in-memory": "sqlite://",
    "not-a-url": "not a url",
}
if "postgresql" in BACKENDS:
    _URLS["postgresql-missing-database"] = (
        make_url(SERVER_URLS["postgresql"])
        .set(database=f"dxapi_missing_{secrets.token_hex(4)}")
        .render_as_string(hide_password=False)
    )


@dataclass
class Failures:
    target: Target
    results: dict[str, Result]


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> Failures:
    directory = tmp_path_factory.mktemp("cli-failures")
    target = Target("sqlite", _sqlite_shop(directory), directory)
    for name, content in _FILES.items():
        if content is not None:
            (directory / name).write_bytes(content)
    calls: dict[str, tuple[tuple[str, ...], str | None]] = {
        f"file:{name}": (("config", "import", str(directory / name)), target.url) for name in _FILES
    }
    calls |= {f"url:{name}": (("config", "export"), url) for name, url in _URLS.items()}
    calls["before-init:check"] = (("config", "check"), target.url)
    return Failures(target, run_many(calls, directory))


@pytest.mark.parametrize("name", list(_FILES))
def test_unreadable_file_is_one_line(failures: Failures, name: str) -> None:
    line = assert_one_line_failure(failures.results[f"file:{name}"])
    if name == "object.json":
        assert line == "error: the configuration file must hold a JSON array of entries"
    else:
        assert name in line
    assert "dx_entity" not in failures.target.tables()


@pytest.mark.parametrize("name", list(_URLS))
def test_bad_database_url_fails_with_one_line(failures: Failures, name: str) -> None:
    assert_one_line_failure(failures.results[f"url:{name}"])


def test_check_before_init_fails_with_one_line(failures: Failures) -> None:
    assert_one_line_failure(failures.results["before-init:check"])


# --- settings ------------------------------------------------------------------------------------------------


def test_database_url_option_overrides_the_environment(sqlite_target: Target) -> None:
    decoy = sqlite_target.cwd / "decoy.db"
    result = run(
        "config", "import", str(EXAMPLE), url=sqlite_target.url, env_url=f"sqlite:///{decoy}", cwd=sqlite_target.cwd
    )
    assert result.code == 0, result.err
    assert sqlite_target.state()["version"] == 2
    assert not decoy.exists()
    # Without the option the environment is used.
    from_env = run("config", "check", env_url=sqlite_target.url, cwd=sqlite_target.cwd)
    assert (from_env.code, from_env.out) == (0, "5 entities checked, no problems\n")


def test_init_adds_columns_that_newer_versions_introduced(tmp_path: Path) -> None:
    """A database set up by an older dxapi gets the new columns on `dxapi init` (upgrade in place)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert run("init", url=url, cwd=tmp_path).code == 0
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE dx_client DROP COLUMN revoked_before")
    assert run("init", url=url, cwd=tmp_path).code == 0
    columns = {c["name"] for c in sa.inspect(engine).get_columns("dx_client")}
    engine.dispose()
    assert "revoked_before" in columns
