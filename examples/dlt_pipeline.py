"""Load a dxapi entity's change feed into DuckDB with dlt's `rest_api` source: incremental, deletes applied.

dlt is not a dxapi dependency (it brings some 40 packages); install it where you run this:

    pip install "dlt[duckdb]"
    export DXAPI_CLIENT_ID=<client id> DXAPI_CLIENT_SECRET=<client secret>   # a client with products:read
    python examples/dlt_pipeline.py --base-url http://127.0.0.1:8000 --alias products

The entity needs `"changeFeed": true` (see the README's "Syncing with dxapi"). Each run loads what changed
since the previous one into `<workdir>/dxapi_feed.duckdb`, table `dxapi.<alias>` (dashes become
underscores), one row per live key.

How the feed maps onto dlt:

- One `rest_api` resource on `/{alias}/_changes`. Its paginator is dlt's `JSONResponseCursorPaginator`
  (`meta.cursor` → `since`, stop when `meta.hasMore` is false), extended to start from the cursor kept in the
  resource's dlt state and to store each page's cursor there. dlt commits that state with the loaded data,
  so a run that fails loads nothing and leaves the cursor where it was.
- An empty page with `hasMore: true` (changes held back behind a transaction still running on the server)
  is asked again after its `Retry-After`; after `--max-wait` seconds the run ends with what it has and the
  next run goes on from there.
- Each feed entry becomes a row: the entity's fields, `_key` (the identifier), `_deleted` and `_seq` (its
  order within the run). Merge on `_key` with `_deleted` as dlt's `hard_delete` column removes deleted rows;
  `_seq` as `dedup_sort` keeps the newest entry when a key changed again between two pages of one run.
- 410 (`6003`, the cursor is older than the feed's retention): the run is repeated with
  `refresh="drop_resources"`, which drops the table and the stored cursor: a full load from the start.
- dlt creates a column when its first non-null value arrives: a field that is null in every row so far is
  not in the table yet (give it a `columns` hint if it must be).
- Connection failures, 429 and 5xx are retried by dlt's HTTP client (`RUNTIME__REQUEST_MAX_ATTEMPTS`, 5).
  Any other failure ends the run with status 1 and one line on stderr.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

import dlt
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.helpers.requests import Request, Response
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
from dlt.sources.rest_api import rest_api_source

MAX_RETRY_AFTER_S = 60.0


class FeedPaginator(JSONResponseCursorPaginator):
    """`since=<meta.cursor>` while `meta.hasMore`, resuming from and recording to the resource's dlt state."""

    def __init__(self, resource: str, max_wait: float) -> None:
        super().__init__(cursor_path="meta.cursor", cursor_param="since", has_more_path="meta.hasMore")
        self.resource = resource
        self.max_wait = max_wait
        self.held = 0.0

    def init_request(self, request: Request) -> None:
        cursor = dlt.current.resource_state(self.resource).get("cursor")
        if cursor:  # as the parent's update_request places the next page's cursor
            params = request.params if isinstance(request.params, dict) else {}
            request.params = {**params, "since": cursor}

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        super().update_state(response, data)
        dlt.current.resource_state(self.resource)["cursor"] = response.json()["meta"]["cursor"]
        if data or not self.has_next_page:
            self.held = 0.0
            return
        if self.held >= self.max_wait:
            print(f"changes held back on the server for {self.held:.0f} s: stopping here", file=sys.stderr)
            self._has_next_page = False
            return
        wait = min(float(response.headers.get("Retry-After", "1")), MAX_RETRY_AFTER_S)
        time.sleep(wait)
        self.held += wait


def feed_source(base_url: str, alias: str, client_id: str, secret: str, limit: int, max_wait: float) -> Any:
    table = alias.replace("-", "_")
    order = itertools.count()

    def as_row(entry: dict[str, Any]) -> dict[str, Any]:
        return {
            **(entry.get("data") or {}),
            "_key": entry["id"],
            "_deleted": entry["op"] == "delete",
            "_seq": next(order),
        }

    return rest_api_source(
        {
            "client": {
                "base_url": f"{base_url}/dynamic-entity/",
                "auth": OAuth2ClientCredentials(
                    access_token_url=f"{base_url}/token", client_id=client_id, client_secret=secret
                ),
                "paginator": FeedPaginator(table, max_wait),
            },
            "resources": [
                {
                    "name": table,
                    "endpoint": {
                        "path": f"{alias}/_changes",
                        "params": {"page[limit]": limit},
                        "data_selector": "data",
                    },
                    "primary_key": "_key",
                    "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
                    "columns": {
                        "_deleted": {"data_type": "bool", "hard_delete": True},
                        "_seq": {"data_type": "bigint", "dedup_sort": "desc"},
                    },
                    "processing_steps": [{"map": as_row}],
                }
            ],
        },
        name="dxapi_feed",
    )


def failed_response(exc: BaseException) -> Any:
    """The HTTP answer behind a failed run, or None (dlt wraps the HTTP error in its own exceptions)."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        found = pending.pop()
        if found is None or id(found) in seen:
            continue
        seen.add(id(found))
        if getattr(found, "response", None) is not None:
            return found.response  # type: ignore[attr-defined]
        pending += [found.__cause__, found.__context__, getattr(found, "exception", None)]
    return None


def problem(exc: PipelineStepFailed) -> str:
    """One line: dxapi's error code and message when the server answered one, else dlt's first line."""
    response = failed_response(exc)
    try:
        first = response.json()[0]
        where = f"{response.request.method} {response.url}"
        return f"{where}: HTTP {response.status_code} ({first['code']}): {first['message']}"
    except (AttributeError, ValueError, LookupError, TypeError):
        return f"{exc.step}: {exc.exception}".splitlines()[0]


def count_rows(pipeline: Any, table: str) -> int:
    if table not in pipeline.default_schema.tables:  # nothing loaded yet: the feed was empty
        return 0
    with pipeline.sql_client() as sql:
        # the name is a table of the pipeline's own schema, quoted by dlt
        [(rows,)] = sql.execute_sql(f"SELECT count(*) FROM {sql.make_qualified_table_name(table)}")  # noqa: S608
    return int(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--alias", default="products")
    parser.add_argument("--workdir", default="dlt-dxapi", type=Path, help="pipeline state and the DuckDB file")
    parser.add_argument("--page-limit", type=int, default=500)
    parser.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for held-back changes")
    args = parser.parse_args()
    client_id, secret = os.environ.get("DXAPI_CLIENT_ID"), os.environ.get("DXAPI_CLIENT_SECRET")
    if not client_id or not secret:
        parser.error("set DXAPI_CLIENT_ID and DXAPI_CLIENT_SECRET")
    base_url = args.base_url.rstrip("/")
    args.workdir.mkdir(parents=True, exist_ok=True)
    pipeline = dlt.pipeline(
        pipeline_name="dxapi_feed",
        pipelines_dir=str(args.workdir / "pipelines"),
        destination=dlt.destinations.duckdb(str(args.workdir / "dxapi_feed.duckdb")),
        dataset_name="dxapi",
    )

    def source() -> Any:
        return feed_source(base_url, args.alias, client_id, secret, args.page_limit, args.max_wait)

    try:
        try:
            pipeline.run(source())
        except PipelineStepFailed as exc:
            if getattr(failed_response(exc), "status_code", None) != 410:
                raise
            print("the cursor is older than the feed's retention (410): loading again from the start", file=sys.stderr)
            pipeline.run(source(), refresh="drop_resources")
    except PipelineStepFailed as exc:
        print(f"dlt_pipeline: error: {problem(exc)}", file=sys.stderr)
        return 1
    table = args.alias.replace("-", "_")
    rows = count_rows(pipeline, table)
    print(f"{args.alias}: {rows} rows in {args.workdir / 'dxapi_feed.duckdb'} (dxapi.{table})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
