"""The ``dxapi`` command: init, serve, demo and configuration import/export/check.

Every command reads settings from the environment (``DXAPI_*``); ``--database-url`` overrides. A failure
exits non-zero with a one-line reason on stderr (configuration problems: one line each).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import exc as sa_exc

from dxapi.db import create_engine
from dxapi.registry.model import ConfigError
from dxapi.registry.store import (
    check_against_schema,
    check_change,
    ensure_schema,
    export_entities,
    load_entities,
    parse_import,
    parse_import_leniently,
    save_entities,
)
from dxapi.settings import Settings

DEMO_DIR = Path("demo-data")
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "shop-config.json"


class CommandError(Exception):
    """A command failed for a reason the user can act on; printed as one line."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    return Settings(**overrides)


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coroutine)


async def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url)
    try:
        await ensure_schema(engine)
    finally:
        await engine.dispose()
    print("dxapi tables are ready")
    return 0


async def cmd_config_import(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from None
    configs, problems = parse_import_leniently(document)
    engine = create_engine(settings.database_url)
    try:
        if problems:  # report the database problems of the other entries too, then stop untouched
            await check_change(engine, configs, settings.deny_tables, problems)
        await ensure_schema(engine)
        version = await save_entities(engine, configs, actor="cli", action="import", deny=settings.deny_tables)
    finally:
        await engine.dispose()
    print(f"imported {len(configs)} entities; configuration version {version}")
    return 0


async def cmd_config_export(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url)
    try:
        document = await export_entities(engine)
    finally:
        await engine.dispose()
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if args.output:
        Path(args.output).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


async def cmd_config_check(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            configs, broken = await load_entities(conn)
            problems = await check_against_schema(conn, configs, settings.deny_tables)
    finally:
        await engine.dispose()
    lines = [p for found in {**problems, **broken}.values() for p in found]
    for line in lines:
        print(line)
    if lines:
        return 1
    print(f"{len(configs)} entities checked, no problems")
    return 0


async def _build_demo(settings: Settings) -> str:
    """Build the shop database and import the example configuration; return its URL."""
    from sqlalchemy import create_engine as create_sync_engine

    from dxapi.demo import create_shop

    DEMO_DIR.mkdir(exist_ok=True)
    database = DEMO_DIR / "shop.db"
    url = f"sqlite:///{database}"
    sync_engine = create_sync_engine(url)
    counts = create_shop(sync_engine)
    sync_engine.dispose()
    engine = create_engine(url)
    try:
        await ensure_schema(engine)
        configs = parse_import(orjson.loads(EXAMPLE_CONFIG.read_bytes()))
        await save_entities(engine, configs, actor="demo", action="import")
    finally:
        await engine.dispose()
    print(f"demo shop built in {database}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return url


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    url = asyncio.run(_build_demo(settings))
    base = f"http://{settings.host}:{settings.port}{settings.api_prefix}"
    print(
        "\nServing the demo shop. Try:\n"
        f"  curl -g '{base}/products?page[limit]=2&include=productStocks'\n"
        f"  curl -g '{base}/countries?filter[countries.iso2Code]={{\"in\":[\"DE\",\"AT\"]}}"
        "&include=countryTaxRates'\n"
        f"  curl '{base}/products/42'\n"
    )
    return _serve(settings.model_copy(update={"database_url": url}), workers=1)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    updates = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k)) is not None}
    return _serve(settings.model_copy(update=updates), workers=updates.get("workers", settings.workers))


def _serve(settings: Settings, workers: int) -> int:
    import uvicorn

    # Worker processes build their own Settings from the environment: hand the effective values down.
    os.environ["DXAPI_DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "dxapi.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        proxy_headers=False,
    )
    return 0


def _async(command: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]) -> Any:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        return _run(command(settings, args))

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dxapi", description="Data-exchange REST API over your database.")
    parser.add_argument("--database-url", help="SQLAlchemy URL (overrides DXAPI_DATABASE_URL)")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("init", help="create or upgrade dxapi's own tables").set_defaults(run=_async(cmd_init))

    serve = commands.add_parser("serve", help="serve the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(run=cmd_serve)

    commands.add_parser("demo", help="build the embedded SQLite shop and serve it").set_defaults(run=cmd_demo)

    config = commands.add_parser("config", help="import, export or check entity configurations")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    importer = config_commands.add_parser("import", help="import a Spryker installer-format JSON file")
    importer.add_argument("file")
    importer.set_defaults(run=_async(cmd_config_import))
    exporter = config_commands.add_parser("export", help="print the configuration as installer-format JSON")
    exporter.add_argument("--output", "-o")
    exporter.set_defaults(run=_async(cmd_config_export))
    config_commands.add_parser("check", help="validate every configuration against the live schema").set_defaults(
        run=_async(cmd_config_check)
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(_settings(args), args)
        return result
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    except (CommandError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the database: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except sa_exc.SQLAlchemyError as exc:
        print(f"error: {_database_reason(exc)}", file=sys.stderr)
        return 1


def _database_reason(exc: sa_exc.SQLAlchemyError) -> str:
    if isinstance(exc, sa_exc.ArgumentError):
        return "the database URL is not valid (use sqlite:///file.db, postgresql://… or mysql://…)"
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "dx_" in first and ("exist" in first or "no such table" in first):
        return "dxapi's tables are missing in this database; run `dxapi init` first"
    return f"database error: {first}"


if __name__ == "__main__":
    sys.exit(main())
