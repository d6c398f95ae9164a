"""The ``dxapi`` command: init, serve, demo and configuration import/export/check.

Every command reads settings from the environment (``DXAPI_*``); ``--database-url`` overrides. A failure
exits non-zero with a one-line reason on stderr (configuration problems: one line each).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from dxapi.auth import principals
from dxapi.auth.tokens import KeyConfigurationError, ensure_secret_file, load_keys
from dxapi.db import create_engine
from dxapi.limits.rates import DEFAULT, RateError, parse_override
from dxapi.registry.capture import capture_problems, sync_captures
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
RATE_LIMIT_HELP = (
    "requests per window (`1200/minute`, `10/second`, `100/30s`) in place of DXAPI_RATE_LIMIT; `unlimited`: "
    "none; `default`: DXAPI_RATE_LIMIT"
)
DEMO_ADMIN = "admin@example.com"


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
    engine = create_engine(settings.database_url, pgbouncer=settings.pgbouncer)
    try:
        await ensure_schema(engine)
        async with engine.begin() as conn:
            configs, _broken = await load_entities(conn)
            installed = await conn.run_sync(sync_captures, configs)
    finally:
        await engine.dispose()
    print("dxapi tables are ready")
    for table in installed:
        print(f"installed the change capture of `{table}`")
    if settings.environment != "production":
        created = ensure_secret_file(settings)
        if created is not None:
            print(f"generated a token signing secret in {created} (set DXAPI_JWT_SECRET in production)")
    return 0


async def cmd_openapi(settings: Settings, args: argparse.Namespace) -> int:
    from dxapi.openapi import build_openapi
    from dxapi.registry.snapshot import load_snapshot

    snapshot = await _with_engine(settings, lambda e: load_snapshot(e, settings.deny_tables))
    sys.stdout.buffer.write(orjson.dumps(build_openapi(snapshot, settings), option=orjson.OPT_INDENT_2) + b"\n")
    return 0


async def _with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
    engine = create_engine(settings.database_url, pgbouncer=settings.pgbouncer)
    try:
        return await work(engine)
    finally:
        await engine.dispose()


async def cmd_user(settings: Settings, args: argparse.Namespace) -> int:
    action = args.user_command
    if action == "add":
        await _with_engine(settings, lambda e: principals.add_user(e, args.email, args.password, args.role))
        print(f"user {args.email.lower()} added with role {args.role}")
        return 0
    values: dict[str, Any] = {"is_active": False} if action == "disable" else {"password": args.password}
    if action == "passwd" and len(args.password) < 12:
        raise CommandError("the password must be at least 12 characters long")
    if not await _with_engine(settings, lambda e: principals.set_user(e, args.email, **values)):
        raise CommandError(f"no user {args.email}")
    print(f"user {args.email.lower()} {'disabled' if action == 'disable' else 'password changed'}")
    return 0


async def cmd_client(settings: Settings, args: argparse.Namespace) -> int:
    action = args.client_command
    if action == "add":
        scopes = principals.parse_scopes(args.scopes)
        limit = _rate_limit(args.rate_limit or DEFAULT)
        client_id, secret = await _with_engine(
            settings, lambda e: principals.add_client(e, args.name, scopes, rate_limit=limit)
        )
        print(f"client_id={client_id}\nclient_secret={secret}\n(the secret is shown only now)")
        return 0
    if action == "rate-limit":
        limit = _rate_limit(args.limit)
        if not await _with_engine(settings, lambda e: principals.set_client(e, args.client_id, rate_limit=limit)):
            raise CommandError(f"no client {args.client_id}")
        print(f"client {args.client_id} rate limit: {limit or 'the default (DXAPI_RATE_LIMIT)'}")
        return 0
    if action == "disable":
        if not await _with_engine(settings, lambda e: principals.set_client(e, args.client_id, is_active=False)):
            raise CommandError(f"no client {args.client_id}")
        print(f"client {args.client_id} disabled")
        return 0
    secret = await _with_engine(settings, lambda e: principals.rotate_client_secret(e, args.client_id))
    if secret is None:
        raise CommandError(f"no client {args.client_id}")
    print(f"client_secret={secret}\n(the secret is shown only now; the old one no longer works)")
    return 0


def _rate_limit(text: str) -> str | None:
    try:
        return parse_override(text)
    except RateError as exc:
        raise CommandError(str(exc)) from None


async def cmd_apikey(settings: Settings, args: argparse.Namespace) -> int:
    if args.apikey_command == "add":
        scopes = principals.parse_scopes(args.scopes)
        expires = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=args.days) if args.days else None
        prefix, key = await _with_engine(settings, lambda e: principals.add_api_key(e, args.name, scopes, expires))
        print(f"api_key={key}\nid={prefix}\n(the key is shown only now)")
        return 0
    if not await _with_engine(settings, lambda e: principals.revoke_api_key(e, args.id)):
        raise CommandError(f"no active API key {args.id}")
    print(f"API key {args.id} revoked")
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
    engine = create_engine(settings.database_url, pgbouncer=settings.pgbouncer)
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
    engine = create_engine(settings.database_url, pgbouncer=settings.pgbouncer)
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
    engine = create_engine(settings.database_url, pgbouncer=settings.pgbouncer)
    try:
        async with engine.connect() as conn:
            configs, broken = await load_entities(conn)
            problems = await check_against_schema(conn, configs, settings.deny_tables)
            for alias, found in (await conn.run_sync(capture_problems, configs)).items():
                problems.setdefault(alias, []).extend(found)
    finally:
        await engine.dispose()
    lines = [p for found in {**problems, **broken}.values() for p in found]
    for line in lines:
        print(line)
    if lines:
        return 1
    print(f"{len(configs)} entities checked, no problems")
    return 0


async def _build_demo(settings: Settings) -> tuple[str, str, str, str]:
    """Build the shop database, configure it and create demo credentials; return the URL and them."""
    from sqlalchemy import create_engine as create_sync_engine

    from dxapi.demo import create_shop, shop_config

    DEMO_DIR.mkdir(exist_ok=True)
    database = DEMO_DIR / "shop.db"
    url = f"sqlite:///{database}"
    sync_engine = create_sync_engine(url)
    counts = create_shop(sync_engine)
    sync_engine.dispose()
    engine = create_engine(url)
    try:
        await ensure_schema(engine)
        configs = parse_import(shop_config())
        await save_entities(engine, configs, actor="demo", action="import")
        password = secrets.token_urlsafe(12)
        await principals.add_user(engine, DEMO_ADMIN, password, "admin")
        client_id, client_secret = await principals.add_client(
            engine, "demo connector", frozenset({"*:read", "*:write", "*:delete"})
        )
    finally:
        await engine.dispose()
    print(f"demo shop built in {database}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return url, password, client_id, client_secret


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    settings = settings.model_copy(update={"jwt_secret_file": str(DEMO_DIR / "jwt-secret")})
    url, password, client_id, client_secret = asyncio.run(_build_demo(settings))
    ensure_secret_file(settings)
    root = f"http://{settings.host}:{settings.port}"
    base = f"{root}{settings.api_prefix}"
    print(
        f"\nServing the demo shop on {root} (new credentials each run, shown only now):\n"
        f"  back-office user  {DEMO_ADMIN} / {password}\n"
        f"  OAuth client      {client_id} / {client_secret}\n\n"
        "Get a token, then call the API with it:\n"
        f"  TOKEN=$(curl -s {root}/token -d grant_type=client_credentials "
        f"-d client_id={client_id} -d client_secret={client_secret} | python3 -c "
        "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
        f"  curl -g -H \"Authorization: Bearer $TOKEN\" '{base}/products?page[limit]=2&include=productStocks'\n"
        f'  curl -g -H "Authorization: Bearer $TOKEN" '
        f'\'{base}/countries?filter[countries.iso2Code]={{"in":["DE","AT"]}}&include=countryTaxRates\'\n'
    )
    return _serve(settings.model_copy(update={"database_url": url}), workers=1)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    updates = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k)) is not None}
    return _serve(settings.model_copy(update=updates), workers=updates.get("workers", settings.workers))


def _serve(settings: Settings, workers: int) -> int:
    from dxapi.server import serve

    try:
        load_keys(settings)  # refuse to start on a bad key configuration, with one line instead of a trace
    except (KeyConfigurationError, OSError, ValueError) as exc:
        raise CommandError(f"cannot sign tokens: {exc}") from None
    # Worker processes build their own Settings from the environment: hand the effective values down.
    os.environ["DXAPI_DATABASE_URL"] = settings.database_url
    os.environ["DXAPI_JWT_SECRET_FILE"] = settings.jwt_secret_file
    serve(settings, workers)
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

    commands.add_parser("openapi", help="print the OpenAPI document of the active configuration").set_defaults(
        run=_async(cmd_openapi)
    )

    user = commands.add_parser("user", help="back-office users (password grant, admin page)")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="add a user")
    add.add_argument("email")
    add.add_argument("--password", required=True)
    add.add_argument("--role", choices=sorted(principals.ROLES), default="viewer")
    disable = user_commands.add_parser("disable", help="disable a user (tokens stop working within seconds)")
    disable.add_argument("email")
    passwd = user_commands.add_parser("passwd", help="set a new password")
    passwd.add_argument("email")
    passwd.add_argument("--password", required=True)
    user.set_defaults(run=_async(cmd_user))

    client = commands.add_parser("client", help="OAuth clients (client_credentials grant)")
    client_commands = client.add_subparsers(dest="client_command", required=True)
    add = client_commands.add_parser("add", help="add a client; prints client_id and secret once")
    add.add_argument("name")
    add.add_argument("--scopes", required=True, help='e.g. "products:read tax-rates:write *:read"')
    add.add_argument("--rate-limit", help=RATE_LIMIT_HELP)
    rate_limit = client_commands.add_parser("rate-limit", help="set a client's own rate limit")
    rate_limit.add_argument("client_id")
    rate_limit.add_argument("limit", help=RATE_LIMIT_HELP)
    for name, text in (("disable", "disable a client"), ("rotate-secret", "issue a new secret")):
        client_commands.add_parser(name, help=text).add_argument("client_id")
    client.set_defaults(run=_async(cmd_client))

    apikey = commands.add_parser("apikey", help="API keys (X-Api-Key header)")
    apikey_commands = apikey.add_subparsers(dest="apikey_command", required=True)
    add = apikey_commands.add_parser("add", help="add a key; prints it once")
    add.add_argument("name")
    add.add_argument("--scopes", required=True)
    add.add_argument("--days", type=int, help="expire after this many days")
    apikey_commands.add_parser("revoke", help="revoke a key by its id").add_argument("id")
    apikey.set_defaults(run=_async(cmd_apikey))
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
    except ValidationError as exc:  # the settings: every problem, named by its variable
        for refused in exc.errors():
            where = "".join(f"DXAPI_{str(part).upper()}: " for part in refused["loc"][:1])
            print(f"error: {where}{refused['msg'].removeprefix('Value error, ')}", file=sys.stderr)
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
