"""The dependencies that hand a route its principal, each after spending one of its budgets.

A ``/v1`` route takes its principal from exactly one of:

- ``ReadPrincipal``: authenticates, then spends one request of the key's read budget;
- ``WritePrincipal``: the same with the write budget;
- ``read_through_cache(plan)``: a read that also fetches the cache keys its plan names, in the
  same Redis round trip as the budget (a ``CachedRead``).

A request without valid credentials spends the client IP's anonymous budget instead, so guessing
keys is rate limited too; a key this process has not verified lately spends it *before* it is
looked up (decision 0032). Answers given before any of these ran are metered at the edge
(``access.edge``, decision 0033).

``Authenticated`` (the principal with nothing spent) exists for the plan dependencies of
``read_through_cache``; ``herald_api.access.route_check`` refuses to build
an app in which a route could reach it any other way (decision 0018).

(No ``from __future__ import annotations`` here: FastAPI resolves string annotations in module
globals, and ``read_through_cache`` annotates with a dependency it was given.)
"""

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Generic, Protocol, TypeVar

from fastapi import Depends, Request
from starlette.types import Scope

from herald_api.access.keys import (
    AuthenticationError,
    Credentials,
    Principal,
    credentials_of,
    verify,
)
from herald_api.access.ratelimit import LimitResult, RateLimitUnavailableError
from herald_api.http.problems import Problem
from herald_api.http.request_context import add_response_headers, set_account_of
from herald_api.http.unavailable import DATABASE_UNAVAILABLE
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


#: Set in the request's state once a budget's RateLimit headers are on its response.
_METERED = "herald.metered"
#: The request's principal, once authenticated.
_PRINCIPAL = "herald.principal"


def is_metered_scope(scope: Scope) -> bool:
    """Whether this request has spent a budget whose headers its response will carry."""
    state = scope.get("state")
    return bool(state and state.get(_METERED))


def principal_of(request: Request) -> Principal | None:
    """The principal this request authenticated as, if it did."""
    principal = request.scope.get("state", {}).get(_PRINCIPAL)
    return principal if isinstance(principal, Principal) else None


def _apply(request: Request, result: LimitResult, bucket: str) -> None:
    """Attach the RateLimit headers to the response; raise 429 when over the limit."""
    add_response_headers(request.scope, result.headers())
    request.scope.setdefault("state", {})[_METERED] = True
    RATE_LIMIT_DECISIONS.labels(bucket, "allowed" if result.allowed else "limited").inc()
    if not result.allowed:
        raise Problem(
            429,
            f"Rate limit of {result.limit} requests per {result.window_seconds} s exceeded.",
            type_="rate-limited",
            headers={"Retry-After": str(result.retry_after_seconds or 1)},
        )


async def _hit(
    state: AppState, subject: str, limit: int, also_get: tuple[str, ...] = ()
) -> LimitResult | None:
    """Count one request of ``subject``; None when rate limiting is off."""
    if state.limiter is None:
        return None
    try:
        return await state.limiter.hit(subject, limit, also_get=also_get)
    except RateLimitUnavailableError:
        raise Problem(
            503, "Rate limiting is unavailable; try again shortly.", headers={"Retry-After": "2"}
        ) from None


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
    result = await _hit(state, subject, limit, also_get)
    if result is not None:
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


def _anonymous_subject(request: Request) -> str:
    # The client as the trusted proxies report it (``http.forwarded``), else the peer.
    return f"ip:{request.client.host if request.client else 'unknown'}"


class _Anonymous:
    """The client IP's anonymous budget for one request: spent at most once, its headers
    attached only if the request ends up not authenticated (or over that budget)."""

    def __init__(self, request: Request, state: AppState) -> None:
        self._request = request
        self._state = state
        self._result: LimitResult | None = None
        self._spent = False

    async def spend(self, also_get: tuple[str, ...] = ()) -> LimitResult | None:
        """Spend one request before a key is looked up; 429 (with headers) when over."""
        limit = self._state.settings.rate_limit.anonymous_per_window
        self._result = await _hit(self._state, _anonymous_subject(self._request), limit, also_get)
        self._spent = True
        if self._result is not None and not self._result.allowed:
            _apply(self._request, self._result, "anonymous")
        return self._result

    async def refuse(self, exc: AuthenticationError) -> Problem:
        """The 401 for a request that failed to authenticate, its anonymous budget spent."""
        if not self._spent:
            await self.spend()
        if self._result is not None:
            _apply(self._request, self._result, "anonymous")
        return Problem(
            401, exc.reason, type_="unauthorized", headers={"WWW-Authenticate": exc.challenge}
        )

    def report(self) -> None:
        """Attach the headers of the budget spent, if one was (the request ends unverified)."""
        if self._result is not None and not is_metered_scope(self._request.scope):
            add_response_headers(self._request.scope, self._result.headers())
            self._request.scope.setdefault("state", {})[_METERED] = True

    async def give_back(self) -> None:
        """The request proved to carry a valid key: what it spent here is not the IP's."""
        if self._result is not None and self._state.limiter is not None:
            await self._state.limiter.refund(self._result)


async def _look_up(state: AppState, credentials: Credentials, anonymous: _Anonymous) -> Principal:
    """Verify a key this process has not looked up lately: the client IP's anonymous budget is
    spent first (nothing is looked up once it is exhausted), then tokens known not to be valid
    are refused from Redis, and only then is PostgreSQL asked — once per token per TTL. A key
    that proves valid gives the IP its request back: only failures wear the IP's budget down."""
    unknown = state.unknown_keys
    remembered_key = unknown.key_for(credentials.token) if unknown is not None else None
    spent = await anonymous.spend(also_get=(remembered_key,) if remembered_key else ())
    if unknown is not None:
        reason = (
            unknown.reason_of(spent.values[0] if spent.values else None)
            if spent is not None
            else await unknown.reason(credentials.token)
        )
        if reason is not None:
            raise AuthenticationError(reason, "invalid_token")
    stored = await state.keys.look_up(credentials.key_id)
    try:
        principal = verify(credentials, stored)
    except AuthenticationError as exc:
        if unknown is not None:
            await unknown.remember(credentials.token, exc.reason)
        raise
    await anonymous.give_back()
    return principal


async def authenticate_request(request: Request) -> Principal:
    """The request's principal, with nothing spent but the client IP's anonymous budget when
    the key is not one this process verified lately (401 when it fails to authenticate, 429
    when that budget is exhausted: then nothing is looked up)."""
    # State and header read here rather than declared as parameters: every dependency level
    # FastAPI solves costs on each request, and this one runs on every request there is.
    if (known := principal_of(request)) is not None:
        return known
    state = await get_state(request)
    anonymous = _Anonymous(request, state)
    try:
        credentials = credentials_of(request.headers.get("authorization"))
        stored = state.keys.cached(credentials.key_id)
        if stored is not None:
            principal = verify(credentials, stored)
        else:
            principal = await _look_up(state, credentials, anonymous)
    except AuthenticationError as exc:
        raise await anonymous.refuse(exc) from None
    except BaseException:
        anonymous.report()  # the lookup failed (the database, say): what was spent is shown
        raise
    request.scope.setdefault("state", {})[_PRINCIPAL] = principal
    set_account_of(request.scope, str(principal.account_id))
    return principal


async def meter_late(request: Request) -> Problem | None:
    """Spend the budget of a ``/v1`` request whose response is starting without one spent (see
    ``access.edge``); the problem to answer instead when it is over its limit (429), or when
    the limiter fails closed (503)."""
    try:
        principal = await authenticate_request(request)
        budget = Budget.READ if request.method in ("GET", "HEAD") else Budget.WRITE
        await _spend_budget(request, await get_state(request), principal, budget)
    except Problem as problem:
        # A 401 spent the IP's anonymous budget and attached its headers: the answer stands.
        return problem if problem.status in (429, 503) else None
    except DATABASE_UNAVAILABLE:
        return None  # the key cannot be looked up now; the answer already decided stands
    return None


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
