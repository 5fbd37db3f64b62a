"""Request dependencies shared by the routes: the authenticated principal and its rate limits.

``ReadPrincipal`` and ``WritePrincipal`` authenticate and spend one request of the key's read or
write budget; a request without valid credentials spends the client IP's anonymous budget
instead, so guessing keys is rate limited too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from herald_api.auth import AuthenticationError, Principal, authenticate
from herald_api.lifespan import AppState, StateDep, get_state
from herald_api.problems import Problem
from herald_api.ratelimit import LimitResult, RateLimitUnavailableError
from herald_api.request_context import add_response_headers, set_account_of
from herald_shared.metrics import RATE_LIMIT_DECISIONS


def apply_limit(request: Request, result: LimitResult, bucket: str) -> None:
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


async def spend(
    request: Request,
    state: AppState,
    subject: str,
    limit: int,
    *,
    bucket: str,
    also_get: str | None = None,
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
    apply_limit(request, result, bucket)
    return result


async def current_principal(request: Request) -> Principal:
    # State and header read here rather than declared as parameters: every dependency level
    # FastAPI solves costs on each request, and this one runs on every request there is.
    state = await get_state(request)
    authorization = request.headers.get("authorization")
    try:
        principal = await authenticate(authorization, state.db, state.keys)
    except AuthenticationError as exc:
        client = request.client.host if request.client else "unknown"
        limit = state.settings.rate_limit.anonymous_per_window
        await spend(request, state, f"ip:{client}", limit, bucket="anonymous")
        raise Problem(
            401, exc.reason, type_="unauthorized", headers={"WWW-Authenticate": exc.challenge}
        ) from None
    set_account_of(request.scope, str(principal.account_id))
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def read_limit(state: AppState, principal: Principal) -> int:
    return principal.read_limit or state.settings.rate_limit.read_per_window


async def read_principal(request: Request, state: StateDep, principal: PrincipalDep) -> Principal:
    await spend(
        request, state, f"key:{principal.key_id}:r", read_limit(state, principal), bucket="read"
    )
    return principal


async def write_principal(request: Request, state: StateDep, principal: PrincipalDep) -> Principal:
    limit = principal.write_limit or state.settings.rate_limit.write_per_window
    await spend(request, state, f"key:{principal.key_id}:w", limit, bucket="write")
    return principal


ReadPrincipal = Annotated[Principal, Depends(read_principal)]
WritePrincipal = Annotated[Principal, Depends(write_principal)]
