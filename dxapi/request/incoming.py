"""The request object the data endpoints are handed: Starlette's, with cheaper header and query lookups.

A read by id looks up five headers (``authorization``, ``x-api-key``, ``if-match``, ``if-none-match``,
``accept`` …), most of them absent. Starlette's ``Headers`` scans and decodes the raw list on every lookup and
raises ``KeyError`` for each miss; together that cost as much as planning the read. Here the raw list becomes
a dict once, on the first lookup. A request without a query string gets no parsed ``QueryParams`` either.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request

_NO_QUERY = QueryParams()


class _Headers(Headers):
    """``Headers`` whose ``get`` and ``[]`` look names up in a dict (the first of repeated names wins, as in
    Starlette); every other method is Starlette's, over the same raw list."""

    _by_name: dict[str, str] | None = None

    def _names(self) -> dict[str, str]:
        found = self._by_name
        if found is None:
            # reversed: a repeated name keeps the value it has first, as Starlette's scan returns
            found = self._by_name = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(self._list)}
        return found

    def get(self, key: str, default: Any = None) -> Any:
        return self._names().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._names()[key.lower()]

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self._names()


class ApiRequest(Request):
    @property
    def headers(self) -> Headers:
        if not hasattr(self, "_headers"):
            self._headers = _Headers(scope=self.scope)
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        if not hasattr(self, "_query_params"):
            query = self.scope["query_string"]
            self._query_params = QueryParams(query) if query else _NO_QUERY
        return self._query_params
