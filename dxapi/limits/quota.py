"""The policy: which limits a data request counts against, and what it answers.

Per principal: ``DXAPI_RATE_LIMIT``, or the client's own limit (``dx_client.rate_limit``, read with its status
and carried on the ``Principal``); per principal and entity: ``DXAPI_RATE_LIMIT_PER_ENTITY``. Each limit that
applies costs one ``counters.hit``; each one counted so far on a request is remembered in its scope, so that
every answer — a 429 from here or whatever the endpoint answers later — carries, as the IETF draft
(draft-ietf-httpapi-ratelimit-headers) has them::

    RateLimit-Policy: "principal";q=600;w=60, "entity";q=100;w=60
    RateLimit: "principal";r=12;t=30, "entity";r=99;t=30

A request beyond a limit is refused before its body is read: 429 ``4291`` with ``Retry-After``. With no limit
configured and no override the request costs no store call and carries no header. Fed by ``endpoints``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dxapi import errors, observe
from dxapi.auth.scopes import Principal
from dxapi.limits.counters import Counters
from dxapi.limits.rates import Rate, RateError, parse_rate, stored_rate
from dxapi.settings import Settings

log = logging.getLogger("dxapi.limits")

STANDINGS = "dxapi.rate_limits"  # the request scope's key of the limits counted on it
PRINCIPAL, ENTITY = "principal", "entity"


def on_rejected(scope: str) -> None:
    """Every refusal by a limit or a throttle passes here once; ``scope`` is principal, entity, token, login or
    api_key."""
    observe.limited(scope)  # counted in dxapi_rate_limited_total{scope} once the request has its answer
    log.debug("rate limited: %s", scope)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one request stands against one limit."""

    policy: str
    rate: Rate
    remaining: int
    reset: int  # whole seconds until the window ends (at least 1)


def render_headers(standings: list[Standing]) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` of the standings, in the draft's structured-field lists."""
    return {
        "RateLimit-Policy": ", ".join(f'"{s.policy}";q={s.rate.count};w={s.rate.seconds}' for s in standings),
        "RateLimit": ", ".join(f'"{s.policy}";r={s.remaining};t={s.reset}' for s in standings),
    }


class Quota:
    """The limits of one worker, counted in the shared ``counters``."""

    def __init__(self, counters: Counters, settings: Settings) -> None:
        self._counters = counters
        self._default = parse_rate(settings.rate_limit) if settings.rate_limit else None
        self._per_entity = parse_rate(settings.rate_limit_per_entity) if settings.rate_limit_per_entity else None

    async def admit(self, request: Request, principal: Principal) -> None:
        """Count the request against its principal's limit; raise 429 beyond it."""
        rate = self._default if principal.rate_limit is None else _override(principal)
        if rate is not None:
            await self._count(request, PRINCIPAL, f"{PRINCIPAL}:{principal.subject}", rate)

    async def admit_entity(self, request: Request, principal: Principal, alias: str) -> None:
        """Count the request against its principal's limit on ``alias``; raise 429 beyond it."""
        if self._per_entity is not None:
            await self._count(request, ENTITY, f"{ENTITY}:{principal.subject}:{alias}", self._per_entity)

    async def _count(self, request: Request, policy: str, key: str, rate: Rate) -> None:
        hit = await self._counters.hit(key, rate.seconds)
        if hit is None:  # the store failed: admitted, and nothing known to tell the client
            return
        reset = max(1, math.ceil(hit.resets_in))
        standing = Standing(policy, rate, max(0, rate.count - hit.count), reset)
        standings: list[Standing] = request.scope.setdefault(STANDINGS, [])
        standings.append(standing)
        if hit.count > rate.count:
            on_rejected(policy)
            where = "for these credentials" if policy == PRINCIPAL else "for these credentials on this entity"
            item = errors.RATE_LIMITED(quota=rate.count, window=rate.seconds, where=where, seconds=reset)
            raise errors.ApiError([item], {**render_headers(standings), "Retry-After": str(reset)})


def _override(principal: Principal) -> Rate | None:
    """The client's own limit; a stored value that does not parse (written around dxapi) means none."""
    assert principal.rate_limit is not None
    try:
        return stored_rate(principal.rate_limit)
    except RateError as exc:
        log.warning("%s: stored rate limit ignored: %s", principal.subject, exc)
        return None


Endpoint = Callable[[Request], Awaitable[Response]]


def with_limit_headers(endpoint: Endpoint) -> Endpoint:
    """``endpoint``'s answers, errors included, with the rate-limit headers of the limits counted on them."""

    async def limited(request: Request) -> Response:
        try:
            response = await endpoint(request)
        except errors.ApiError as exc:
            standings: Any = request.scope.get(STANDINGS)
            if standings:
                exc.headers = {**render_headers(standings), **exc.headers}
            raise
        standings = request.scope.get(STANDINGS)
        if standings:
            response.headers.update(render_headers(standings))
        return response

    return limited
