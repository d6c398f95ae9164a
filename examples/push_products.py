"""Push the rows of a JSON Lines file into a dxapi entity (the demo's `products` by default), safely retried.

Each line is one object with the entity's visible field names. The rows go in batches (`--batch-size`) by
POST, or by PUT with `--upsert` (rows that carry an existing identifier are replaced, the others created).
Every batch is sent with an `Idempotency-Key` derived from what it is: SHA-256 of the alias, the method, the
batch's number and its body bytes. A retried batch, or a whole run started again after a crash, therefore
gets the answer recorded with the batch's writes (`Idempotency-Replayed: true`) instead of writing it twice.

    export DXAPI_CLIENT_ID=<client id> DXAPI_CLIENT_SECRET=<client secret>   # a client with products:write
    python examples/push_products.py --base-url http://127.0.0.1:8000 products.jsonl

- A batch's body is the file's lines as they are, joined into `{"data":[…]}`, built once and resent byte for
  byte: the server recognises a retry by its exact bytes (docs/retries.md).
- Connection failures, read timeouts and 5xx (and 409 `3004`, a persisting deadlock) are retried `--retries`
  times with exponential backoff; 409 `6103` (the batch's first attempt is still running), 429 and 503 are
  retried after their `Retry-After`. A 401 gets one fresh token. Any other answer ends the run with status 1
  and one line naming dxapi's error; the batches before it stay written.
- Stopped at any point, run the same command again: written batches are answered as replays. This holds for
  `DXAPI_IDEMPOTENCY_TTL` (24 h) and for the same file and `--batch-size`; `--key-prefix` makes every key
  new (to push the same rows again on purpose).

Standard library only. Exit status: 0 every batch written, 1 error, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

PREFIX = "/dynamic-entity"
MAX_BACKOFF_S = 10.0
MAX_RETRY_AFTER_S = 60.0


class PushError(Exception):
    """Ends the run: its message is the one line printed."""


def log(message: str) -> None:
    print(f"push_products: {message}", file=sys.stderr, flush=True)


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def document(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def code(self) -> str | None:
        document = self.document()
        first = document[0] if isinstance(document, list) and document else None
        return str(first.get("code")) if isinstance(first, dict) else None

    def problem(self) -> str:
        """One line naming dxapi's first error (its code and message) or the OAuth error."""
        document = self.document()
        if isinstance(document, list) and document and isinstance(document[0], dict):
            more = f" (and {len(document) - 1} more)" if len(document) > 1 else ""
            return f"HTTP {self.status} ({document[0].get('code')}): {document[0].get('message')}{more}"
        if isinstance(document, dict) and "error" in document:
            return f"HTTP {self.status}: {document['error']}"
        return f"HTTP {self.status}"

    def waits(self) -> bool:
        """Asked to come back later: the key is still running (6103), or too many requests."""
        return self.status == 429 or (self.status == 409 and self.code() == "6103")

    def transient(self) -> bool:
        return self.status >= 500 or (self.status == 409 and self.code() == "3004")


def retry_after(headers: Message, default: float) -> float:
    try:
        seconds = float(headers.get("Retry-After") or default)
    except ValueError:  # an HTTP date: dxapi sends seconds, so this is some proxy
        seconds = default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass
class Batch:
    number: int  # from 1
    lines: tuple[int, int]  # first and last line of the file
    rows: int
    body: bytes

    def key(self, prefix: str, alias: str, method: str) -> str:
        """The same batch of the same push always gets the same key; anything else another one."""
        digest = hashlib.sha256(f"{prefix}\0{alias}\0{method}\0{self.number}\0".encode() + self.body)
        return f"push-{digest.hexdigest()}"


def batches(path: Path, size: int) -> Iterator[Batch]:
    """The file's non-blank lines, `size` at a time; a line that is not a JSON object ends the run."""
    chunk: list[tuple[int, bytes]] = []
    made = 0
    with path.open("rb") as source:
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                valid = isinstance(json.loads(line), dict)
            except ValueError:
                valid = False
            if not valid:
                raise PushError(f"{path}:{number}: not a JSON object")
            chunk.append((number, line.strip()))
            if len(chunk) == size:
                made += 1
                yield _batch(made, chunk)
                chunk = []
    if chunk:
        yield _batch(made + 1, chunk)


def _batch(number: int, chunk: list[tuple[int, bytes]]) -> Batch:
    body = b'{"data":[' + b",".join(line for _, line in chunk) + b"]}"  # the lines as they are: no re-encoding
    return Batch(number, (chunk[0][0], chunk[-1][0]), len(chunk), body)


@dataclass
class Client:
    """HTTP with a client-credentials token; retries and waits as the module's docstring says."""

    base_url: str
    client_id: str
    client_secret: str
    retries: int
    max_wait: float
    timeout: float
    token: str | None = None

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read())

    def _attempts(self, what: str, send: Callable[[], Answer]) -> Answer:
        failures, waited = 0, 0.0
        while True:
            try:
                answer = send()
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut short
                problem, wait = f"cannot reach {self.base_url} ({what}): {getattr(exc, 'reason', None) or exc}", 0.0
            else:
                if answer.waits():
                    wait = retry_after(answer.headers, 1.0)
                    if waited + wait > self.max_wait:
                        raise PushError(f"{what}: {answer.problem()} (still after {waited:.0f} s)")
                    log(f"{what}: {answer.problem()}; asking again in {wait:.1f} s")
                    time.sleep(wait)
                    waited += wait
                    continue
                if not answer.transient():
                    return answer
                problem, wait = f"{what}: {answer.problem()}", retry_after(answer.headers, 0.0)
            if failures == self.retries:
                raise PushError(f"{problem} (gave up after {failures + 1} attempts)")
            wait = max(wait, min(0.5 * 2**failures, MAX_BACKOFF_S))
            failures += 1
            log(f"{problem}; retrying in {wait:.1f} s")
            time.sleep(wait)

    def fetch_token(self) -> None:
        form = urllib.parse.urlencode(
            {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret}
        ).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        answer = self._attempts("POST /token", lambda: self._send("POST", "/token", form, headers))
        if answer.status != 200:
            raise PushError(f"POST /token: {answer.problem()}")
        self.token = str(answer.document()["access_token"])

    def write(self, method: str, path: str, body: bytes, key: str) -> Answer:
        """One keyed write, the same bytes on every attempt; a 401 gets one fresh token and one more try."""
        for renewed in (False, True):
            if self.token is None:
                self.fetch_token()
            headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key}
            headers |= {"Content-Type": "application/json", "Accept": "application/json"}
            answer = self._attempts(f"{method} {path}", functools.partial(self._send, method, path, body, headers))
            if answer.status != 401 or renewed:
                return answer
            self.token = None
        raise AssertionError("unreachable")


@dataclass
class Push:
    client: Client
    alias: str
    method: str
    key_prefix: str
    batches: int = 0
    rows: int = 0
    replayed: int = 0
    replayed_rows: int = 0

    def run(self, source: Iterator[Batch]) -> None:
        path = f"{PREFIX}/{urllib.parse.quote(self.alias, safe='')}"
        for batch in source:
            key = batch.key(self.key_prefix, self.alias, self.method)
            answer = self.client.write(self.method, path, batch.body, key)
            replay = answer.headers.get("Idempotency-Replayed") == "true"
            if answer.status not in (200, 201):
                earlier = " (recorded for this batch by an earlier attempt)" if replay else ""
                lines = f"lines {batch.lines[0]}-{batch.lines[1]}"
                raise PushError(f"batch {batch.number} ({lines}): {answer.problem()}{earlier}")
            self.batches, self.rows = self.batches + 1, self.rows + batch.rows
            if replay:
                self.replayed += 1
                self.replayed_rows += batch.rows

    def summary(self) -> str:
        return (
            f"{self.alias}: {self.rows} rows in {self.batches} batches sent by {self.method}; "
            f"{self.replayed} replayed ({self.replayed_rows} rows written before); "
            f"{self.rows - self.replayed_rows} rows written"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("file", type=Path, help="JSON Lines: one object per line, the entity's field names")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--alias", default="products", help="the entity to write (default: products)")
    parser.add_argument("--batch-size", type=int, default=500, help="rows per request (default 500)")
    parser.add_argument("--upsert", action="store_true", help="PUT (replace or create) instead of POST")
    parser.add_argument("--key-prefix", default="", help="mixed into every key: change it to push again anew")
    parser.add_argument("--client-id", default=os.environ.get("DXAPI_CLIENT_ID"), help="or $DXAPI_CLIENT_ID")
    parser.add_argument(
        "--client-secret", default=os.environ.get("DXAPI_CLIENT_SECRET"), help="or $DXAPI_CLIENT_SECRET"
    )
    parser.add_argument("--retries", type=int, default=5, help="retries of a connection failure or 5xx")
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds of Retry-After waits per request")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer")
    args = parser.parse_args(argv)
    if not args.client_id or not args.client_secret:
        parser.error("a client id and secret are needed (--client-id/--client-secret or DXAPI_CLIENT_ID/_SECRET)")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = Client(
        args.base_url.rstrip("/"), args.client_id, args.client_secret, max(args.retries, 0), args.max_wait, args.timeout
    )
    push = Push(client, args.alias, "PUT" if args.upsert else "POST", args.key_prefix)
    try:
        client.fetch_token()  # wrong credentials fail before the file is read
        push.run(batches(args.file, args.batch_size))
    except PushError as exc:
        log(f"error: {exc}")
        return 1
    except OSError as exc:
        log(f"error: {args.file}: {exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; run the same command again: the batches already written are answered as replays")
        return 130
    print(push.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
