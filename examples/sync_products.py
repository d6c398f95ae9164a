"""Incremental pull of `products` from a dxapi server: what changed since the last run?

A connector keeps a cursor (the last `updatedAt` seen and the identifiers seen at exactly that instant) and
asks for `updatedAt >= cursor` in `updatedAt` order, skipping the rows it already has. Using `gte` plus the
seen set instead of `gt` means rows sharing a timestamp across a page boundary are never lost.

    python examples/sync_products.py --base-url http://127.0.0.1:8000 --state sync-state.json

Standard library only; prints one JSON line per changed product to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path

PAGE = 500


def fetch(base_url: str, since: str | None, token: str | None) -> list[dict[str, object]]:
    params = {"sort": "updatedAt,idProduct", "page[limit]": str(PAGE)}
    if since is not None:
        params["filter[products.updatedAt]"] = json.dumps({"gte": since})
    url = f"{base_url}/dynamic-entity/products?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        rows: list[dict[str, object]] = json.load(response)["data"]
        return rows


def sync(base_url: str, state_file: Path, token: str | None) -> int:
    state = json.loads(state_file.read_text()) if state_file.exists() else {"since": None, "seen": []}
    since, seen = state["since"], set(state["seen"])
    changed = 0
    while True:
        rows = fetch(base_url, since, token)
        fresh = [row for row in rows if not (row["updatedAt"] == since and row["idProduct"] in seen)]
        for row in fresh:
            print(json.dumps(row))
            changed += 1
            if row["updatedAt"] != since:
                since, seen = str(row["updatedAt"]), set()
            seen.add(row["idProduct"])
        if len(rows) < PAGE:
            break
        if not fresh:
            raise SystemExit(f"more than {PAGE} rows share updatedAt={since}; raise PAGE")
    state_file.write_text(json.dumps({"since": since, "seen": sorted(seen)}))
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--state", default="sync-state.json", type=Path)
    parser.add_argument("--token", help="bearer token, when the server requires one")
    args = parser.parse_args()
    count = sync(args.base_url, args.state, args.token)
    print(f"{count} changed products", file=sys.stderr)


if __name__ == "__main__":
    main()
