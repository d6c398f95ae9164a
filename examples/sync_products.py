"""Keep a local copy of a dxapi entity (the demo's `products` by default) in step with its change feed.

The connector reads `GET /dynamic-entity/{alias}/_changes` page by page and applies every upsert and delete
to a SQLite file, storing each page's `meta.cursor` in the same transaction as the page's changes. Stopped
at any point (a crash, Ctrl-C, a network failure), the next run resumes from the last committed page:
nothing is lost and nothing is applied twice out of order.

    export DXAPI_CLIENT_ID=<client id> DXAPI_CLIENT_SECRET=<client secret>   # a client with products:read
    python examples/sync_products.py --base-url http://127.0.0.1:8000 --state products.sqlite

The entity must have `"changeFeed": true` in its definition (the demo ships with it off: tick "Change feed"
on the entity in the back office, or see the README's "Syncing with dxapi").

- First run (no state file, or a fresh one): the whole table, then whatever changed meanwhile.
- Later runs: only what changed since the stored cursor. `--follow` keeps polling after catching up.
- 410 (`6003`, the cursor is older than the feed's retention): the copy is cleared and loaded again from the
  start, in the same run.
- An empty page with `hasMore: true` (changes held back behind a transaction still running on the server)
  is asked again after its `Retry-After`; held back for longer than `--max-wait` seconds, the run stops with
  exit status 75 and the copy as of the stored cursor: run again later.
- Connection failures and 5xx answers are retried `--retries` times with exponential backoff (honouring
  `Retry-After`); any other failure ends the run with status 1 and one line on stderr.

The state file holds two tables: `items` (`id` the identifier as JSON text, `data` the row's configured
fields as a JSON object) and `sync_state` (the alias and the cursor). Read the copy while a sync runs, e.g.
`sqlite3 products.sqlite "SELECT json_extract(data, '$.sku') FROM items"`.

Standard library only. Exit status: 0 caught up, 1 error, 2 bad usage, 75 held back too long, 130 stopped by
Ctrl-C or SIGTERM (the copy stays consistent: a page and its cursor commit together or not at all).
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import signal
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

PREFIX = "/dynamic-entity"
EXIT_ERROR = 1
EXIT_HELD_BACK = 75
EXIT_INTERRUPTED = 130
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
# 503 6004 (capture not installed) needs an operator, not patience.
PERMANENT_CODES = frozenset({"6004"})
MAX_BACKOFF_S = 10.0
MAX_RETRY_AFTER_S = 60.0
MAX_RESYNCS = 3  # a feed that answers 410 to a fresh start again and again is broken: stop


class SyncError(Exception):
    """Ends the run: its message is the one line printed."""


class CursorExpired(Exception):
    """410: the stored cursor is older than the feed's retention."""


class HeldBack(SyncError):
    pass


def log(message: str) -> None:
    print(f"sync_products: {message}", file=sys.stderr, flush=True)


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise SyncError(f"HTTP {self.status}: the answer is not JSON") from None

    def problem(self) -> str:
        """One line naming dxapi's error (its code and message) or the OAuth error."""
        try:
            document = json.loads(self.body)
        except ValueError:
            return f"HTTP {self.status}"
        if isinstance(document, list) and document and isinstance(document[0], dict):
            first = document[0]
            return f"HTTP {self.status} ({first.get('code')}): {first.get('message')}"
        if isinstance(document, dict) and "error" in document:
            detail = document.get("error_description")
            return f"HTTP {self.status}: {document['error']}" + (f" ({detail})" if detail else "")
        return f"HTTP {self.status}"

    def code(self) -> str | None:
        try:
            document = json.loads(self.body)
            return str(document[0]["code"])
        except (ValueError, LookupError, TypeError):
            return None


def retry_after(headers: Message, default: float) -> float:
    value = headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else default
    except ValueError:  # an HTTP date: dxapi sends seconds, so this is some proxy; keep it simple
        seconds = default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass
class Client:
    """HTTP with a bearer token from the client-credentials grant, retries for transient failures."""

    base_url: str
    client_id: str
    client_secret: str
    retries: int
    timeout: float = 30.0
    token: str | None = None
    token_expires: float = 0.0

    def _send(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> Answer:
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read())

    def _with_retries(self, what: str, send: Callable[[], Answer]) -> Answer:
        for attempt in range(self.retries + 1):
            wait = min(0.5 * 2**attempt, MAX_BACKOFF_S)
            try:
                answer = send()
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut short
                reason = getattr(exc, "reason", None) or exc
                problem = f"cannot reach {self.base_url} ({what}): {reason}"
            else:
                if answer.status not in TRANSIENT_STATUS or answer.code() in PERMANENT_CODES:
                    return answer
                problem = f"{what}: {answer.problem()}"
                wait = max(wait, retry_after(answer.headers, 0.0))
            if attempt == self.retries:
                raise SyncError(f"{problem} (gave up after {attempt + 1} attempts)")
            log(f"{problem}; retrying in {wait:.1f} s")
            time.sleep(wait)
        raise AssertionError("unreachable")

    def fetch_token(self) -> None:
        form = urllib.parse.urlencode(
            {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret}
        ).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        answer = self._with_retries("POST /token", lambda: self._send("POST", "/token", form, headers))
        if answer.status != 200:
            raise SyncError(f"POST /token: {answer.problem()}")
        document = answer.json()
        self.token = str(document["access_token"])
        # Renew a little early: a token that expires between sending and checking answers 401.
        self.token_expires = time.monotonic() + float(document.get("expires_in", 300)) - 30

    def get(self, path: str, params: dict[str, str]) -> Answer:
        """GET with the token; a 401 (the token expired or was revoked) gets one fresh token and one retry."""
        url = f"{path}?{urllib.parse.urlencode(params)}"
        for renewed in (False, True):
            if self.token is None or time.monotonic() >= self.token_expires:
                self.fetch_token()
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            answer = self._with_retries(f"GET {path}", functools.partial(self._send, "GET", url, None, headers))
            if answer.status != 401 or renewed:
                return answer
            self.token = None
        raise AssertionError("unreachable")


class Store:
    """The copy and its cursor in one SQLite file; a page and the cursor after it commit together."""

    def __init__(self, path: Path, alias: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
        self.db.execute("PRAGMA journal_mode=WAL")  # readers of the copy never block a sync, nor it them
        self.db.execute("CREATE TABLE IF NOT EXISTS sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
        stored = self._get("alias")
        if stored is None:
            self.db.execute("INSERT INTO sync_state VALUES ('alias', ?)", (alias,))
        elif stored != alias:
            raise SyncError(f"{path} holds a copy of `{stored}`, not of `{alias}`: use another --state file")

    def _get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def cursor(self) -> str | None:
        return self._get("cursor")

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM items").fetchone()[0])

    def apply(self, ops: list[dict[str, Any]], cursor: str) -> tuple[int, int]:
        """Apply one page and store the cursor after it, in one transaction → (upserts, deletes)."""
        upserts = deletes = 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                key = json.dumps(op["id"])
                if op["op"] == "delete":
                    self.db.execute("DELETE FROM items WHERE id = ?", (key,))
                    deletes += 1
                else:
                    self.db.execute("INSERT OR REPLACE INTO items VALUES (?, ?)", (key, json.dumps(op["data"])))
                    upserts += 1
            self.db.execute("INSERT OR REPLACE INTO sync_state VALUES ('cursor', ?)", (cursor,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return upserts, deletes

    def clear(self) -> None:
        """Forget the copy and the cursor (together), so the next page starts a full load."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM items")
        self.db.execute("DELETE FROM sync_state WHERE key = 'cursor'")
        self.db.execute("COMMIT")


@dataclass
class Page:
    ops: list[dict[str, Any]]
    cursor: str
    has_more: bool
    wait: float


def parse_page(answer: Answer) -> Page:
    """A 200 answer of `_changes` → Page; 410 → CursorExpired; anything else ends the run."""
    if answer.status == 410:
        raise CursorExpired()
    if answer.status != 200:
        raise SyncError(answer.problem())
    body = answer.json()
    try:
        ops, meta = body["data"], body["meta"]
        cursor, has_more = meta["cursor"], meta["hasMore"]
        valid = isinstance(cursor, str) and isinstance(has_more, bool) and isinstance(ops, list)
        valid = valid and all(op["op"] == "delete" or isinstance(op["data"], dict) for op in ops)
        valid = valid and all(op["op"] in ("upsert", "delete") and "id" in op for op in ops)
    except (KeyError, TypeError):
        valid = False
    if not valid:
        raise SyncError("the feed answered something that is not a `_changes` page")
    return Page(ops, cursor, has_more, retry_after(answer.headers, 1.0))


@dataclass
class Sync:
    client: Client
    store: Store
    alias: str
    limit: int
    max_wait: float
    follow: bool
    interval: float
    upserts: int = 0
    deletes: int = 0
    resyncs: int = 0
    held: float = field(default=0.0)

    def run(self) -> None:
        path = f"{PREFIX}/{urllib.parse.quote(self.alias, safe='')}/_changes"
        while True:
            params = {"page[limit]": str(self.limit)}
            since = self.store.cursor()
            if since is not None:
                params["since"] = since
            try:
                page = parse_page(self.client.get(path, params))
            except CursorExpired:
                self.resync(since)
                continue
            upserts, deletes = self.store.apply(page.ops, page.cursor)
            self.upserts, self.deletes = self.upserts + upserts, self.deletes + deletes
            if page.has_more:
                self.hold(page)
                continue
            if not self.follow:
                return
            time.sleep(self.interval)

    def resync(self, since: str | None) -> None:
        self.resyncs += 1
        if since is None or self.resyncs > MAX_RESYNCS:
            raise SyncError("the feed answers 410 even to a fresh start")
        log("the cursor is older than the feed's retention (410): clearing the copy and loading it again")
        self.store.clear()

    def hold(self, page: Page) -> None:
        """An empty page with more behind it: changes held back by a transaction still running on the server."""
        if page.ops:
            self.held = 0.0
            return
        if self.held >= self.max_wait:
            problem = f"changes held back on the server for {self.held:.0f} s (a long transaction?)"
            if not self.follow:
                raise HeldBack(f"{problem}; the copy is consistent up to the stored cursor: run again later")
            log(f"{problem}; still waiting")
            self.held = 0.0
        time.sleep(page.wait)
        self.held += page.wait

    def summary(self) -> str:
        total = self.upserts + self.deletes
        again = f", loaded again from the start {self.resyncs}x" if self.resyncs else ""
        return (
            f"{self.alias}: {total} changes applied ({self.upserts} upserts, {self.deletes} deletes){again}; "
            f"{self.store.count()} rows in the copy"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--alias", default="products", help="the entity to copy (default: products)")
    parser.add_argument("--state", default="products.sqlite", type=Path, help="SQLite file: the copy and cursor")
    parser.add_argument("--client-id", default=os.environ.get("DXAPI_CLIENT_ID"), help="or $DXAPI_CLIENT_ID")
    parser.add_argument(
        "--client-secret", default=os.environ.get("DXAPI_CLIENT_SECRET"), help="or $DXAPI_CLIENT_SECRET"
    )
    parser.add_argument("--page-limit", type=int, default=500, help="changes per page (default 500)")
    parser.add_argument("--follow", action="store_true", help="keep polling for changes after catching up")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls with --follow")
    parser.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for held-back changes")
    parser.add_argument("--retries", type=int, default=5, help="retries of a connection failure or 5xx")
    args = parser.parse_args(argv)
    if not args.client_id or not args.client_secret:
        parser.error("a client id and secret are needed (--client-id/--client-secret or DXAPI_CLIENT_ID/_SECRET)")
    return args


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a service manager, docker stop) ends a --follow run like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    client = Client(args.base_url.rstrip("/"), args.client_id, args.client_secret, max(args.retries, 0))
    sync: Sync | None = None
    try:
        client.fetch_token()  # before the state file: wrong credentials leave nothing behind
        store = Store(args.state, args.alias)
        sync = Sync(client, store, args.alias, args.page_limit, args.max_wait, args.follow, args.interval)
        sync.run()
    except HeldBack as exc:
        log(str(exc))
        return EXIT_HELD_BACK
    except SyncError as exc:
        log(f"error: {exc}")
        return EXIT_ERROR
    except sqlite3.Error as exc:
        log(f"error: state file {args.state}: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        log("interrupted; the copy is consistent up to the stored cursor")
        return EXIT_INTERRUPTED
    print(sync.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
