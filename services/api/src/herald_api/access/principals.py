"""The dependencies that hand a route its principal, each after spending one of its budgets.

A ``/v1`` route takes its principal from exactly one of:

- ``ReadPrincipal``: authenticates, then spends one request of the key's read budget;
- ``WritePrincipal``: the same with the write budget;
- ``read_through_cache(plan)``: a read that also fetches the cache keys its plan names, in the
  same Redis round trip as the budget (a ``CachedRead``).

A request without valid credentials spends the client IP's anonymous budget instead, so guessing
keys is rate limited too. ``Authenticated`` (the principal with nothing spent) exists for the
plan dependencies of ``read_through_cache``; ``herald_api.access.route_check`` refuses to build
an app in which a route could reach it any other way (decision 0018).

(No ``from __future__ import annotations`` here: FastAPI resolves string annotations in module
globals, and ``read_through_cache`` annotates with a dependency it was given.)
"""

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Generic, Protocol, TypeVar

from fastapi import Depends, Request

from herald_api.access.keys import AuthenticationError, Principal, authenticate
from herald_api.access.ratelimit import LimitResult, RateLimitUnavailableError
from herald_api.http.problems import Problem
from herald_api.http.request_context import add_response_headers, set_account_of
from herald_api.lifespan import AppState, get_state
from herald_shared.metrics import RATE_LIMIT_DECISIONS
from herald_shared.redis_client import REDIS_UNAVAILABLE
from herald_shared.settings import RateLimitSettings


class Budget(enum.Enum):
    """The two budgets of an API key: reads (GET) and writes (everything else)."""

    READ = "read"
    WRITE = "write"

    def subject(self, principal: Principal) -> str:
        """The limiter's subject: one counter per key and budget (``…:r`` / ``…:w``)."""
        return f"key:{principal.key_id}:{self.value[0]}"

    def limit(self, principal: Principal, limits: RateLimitSettings) -> int:
        """The account's own limit when it has one, else the configured default."""
        if self is Budget.READ:
            return principal.read_limit or limits.read_per_window
        return principal.write_limit or limits.write_per_window


#: Every dependency that hands out a principal, with the budget it spends.
_SPENDERS: dict[Callable[..., object], Budget] = {}

D = TypeVar("D", bound=Callable[..., Awaitable[object]])


def _spends(budget: Budget) -> Callable[[D], D]:
    def register(dependency: D) -> D:
        _SPENDERS[dependency] = budget
        return dependency

    return register


def budget_of(dependency: Callable[..., object] | None) -> Budget | None:
    """The budget ``dependency`` spends when it is one that hands out a principal, else None."""
    return _SPENDERS.get(dependency) if dependency is not None else None


def _apply(request: Request, result: LimitResult, bucket: str) -> None:
    """Attach the RateLimit headers to the response; raise 429 when over the limit."""
    add_response_headers(request.scope, result.headers())
    RATE_LIMIT_DECISIONS.labels(bucket, "allowed" if result.allowed else "limited").inc()
    if not result.allowed:
        raise Problem(
            429,
            f"Rate limit of {result.limit} requests per {result.window_seconds} s exceeded.",
            type_="rate-limited",
            headers={"Retry-After": str(result.retry_after_seconds or 1)},
        )


async def _spend(
    request: Request,
    state: AppState,
    subject: str,
    limit: int,
    *,
    bucket: str,
    also_get: tuple[str, ...] = (),
) -> LimitResult | None:
    """Spend one request of ``subject``'s budget; None when rate limiting is off."""
    if state.limiter is None:
        return None
    try:
        result = await state.limiter.hit(subject, limit, also_get=also_get)
    except RateLimitUnavailableError:
        raise Problem(
            503, "Rate limiting is unavailable; try again shortly.", headers={"Retry-After": "2"}
        ) from None
    _apply(request, result, bucket)
    return result


async def _spend_budget(
    request: Request,
    state: AppState,
    principal: Principal,
    budget: Budget,
    also_get: tuple[str, ...] = (),
) -> LimitResult | None:
    limit = budget.limit(principal, state.settings.rate_limit)
    subject = budget.subject(principal)
    return await _spend(request, state, subject, limit, bucket=budget.value, also_get=also_get)


async def authenticate_request(request: Request) -> Principal:
    """The request's principal, with nothing spent but the anonymous budget of a request that
    fails to authenticate (401)."""
    # State and header read here rather than declared as parameters: every dependency level
    # FastAPI solves costs on each request, and this one runs on every request there is.
    state = await get_state(request)
    authorization = request.headers.get("authorization")
    try:
        principal = await authenticate(authorization, state.db, state.keys)
    except AuthenticationError as exc:
        client = request.client.host if request.client else "unknown"
        limit = state.settings.rate_limit.anonymous_per_window
        await _spend(request, state, f"ip:{client}", limit, bucket="anonymous")
        raise Problem(
            401, exc.reason, type_="unauthorized", headers={"WWW-Authenticate": exc.challenge}
        ) from None
    set_account_of(request.scope, str(principal.account_id))
    return principal


#: The principal with no budget spent: only for the plans of ``read_through_cache``.
Authenticated = Annotated[Principal, Depends(authenticate_request)]


@_spends(Budget.READ)
async def read_principal(request: Request, principal: Authenticated) -> Principal:
    await _spend_budget(request, await get_state(request), principal, Budget.READ)
    return principal


@_spends(Budget.WRITE)
async def write_principal(request: Request, principal: Authenticated) -> Principal:
    await _spend_budget(request, await get_state(request), principal, Budget.WRITE)
    return principal


ReadPrincipal = Annotated[Principal, Depends(read_principal)]
WritePrincipal = Annotated[Principal, Depends(write_principal)]


class CachePlan(Protocol):
    """What a cached read is going to serve: the keys to fetch (of one hash slot), none when
    it cannot be cached."""

    @property
    def cache_keys(self) -> tuple[str, ...]: ...


P = TypeVar("P", bound=CachePlan)


@dataclass(frozen=True, slots=True)
class CachedRead(Generic[P]):
    """Everything a cached read's route works with (the app state too, to serve a miss: one
    dependency level fewer on the hottest path)."""

    principal: Principal
    plan: P
    #: The values under ``plan.cache_keys`` (None for an absent key); all None, or empty when
    #: there are no keys, when Redis could not be asked.
    values: tuple[bytes | None, ...]
    state: AppState

    @property
    def cached(self) -> bytes | None:
        """The value under the plan's first key."""
        return self.values[0] if self.values else None


async def _get_cached(state: AppState, keys: tuple[str, ...]) -> tuple[bytes | None, ...]:
    """A plain cache MGET, for when rate limiting (whose script fetches the keys) is off."""
    if state.cache is None or not keys:
        return ()
    try:
        async with state.redis_breaker.guard():
            raw = await state.cache.client.mget(keys)
    except REDIS_UNAVAILABLE:
        return ()
    return tuple(value if isinstance(value, bytes) else None for value in raw)


def read_through_cache(
    plan: Callable[..., Awaitable[P]],
) -> Callable[..., Awaitable[CachedRead[P]]]:
    """A dependency for a cached read: authenticates, runs ``plan`` (itself a dependency, which
    may take path and query parameters and ``Authenticated``), then spends the read budget and
    fetches ``plan.cache_keys`` in one Redis round trip. Redis failing is a miss, never an error.
    """

    async def read(
        request: Request, principal: Authenticated, planned: Annotated[P, Depends(plan)]
    ) -> CachedRead[P]:
        state = await get_state(request)
        keys = planned.cache_keys
        spent = await _spend_budget(request, state, principal, Budget.READ, also_get=keys)
        values = spent.values if spent is not None else await _get_cached(state, keys)
        return CachedRead(principal, planned, values, state)

    return _spends(Budget.READ)(read)
