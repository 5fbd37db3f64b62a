"""Every ``/v1`` route gets its principal only through a dependency that spends the right budget
(reads for GET, writes otherwise), and an app with a route that does not is refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from herald_api.access.principals import (
    Authenticated,
    Budget,
    CachedRead,
    ReadPrincipal,
    WritePrincipal,
    authenticate_request,
    budget_of,
    read_through_cache,
)
from herald_api.access.route_check import UnmeteredRouteError, check_routes_spend
from herald_api.app import create_app
from herald_api.posts.listing import ListPlan, plan_list
from herald_api.settings import Settings


def _calls(dependant: Dependant) -> list[Callable[..., Any] | None]:
    """Every dependency below ``dependant``, however deep."""
    calls: list[Callable[..., Any] | None] = []
    for sub in dependant.dependencies:
        calls += [sub.call, *_calls(sub)]
    return calls


def test_every_v1_route_spends_exactly_the_budget_of_its_method() -> None:
    routes = [
        route
        for route in iter_route_contexts(create_app(Settings()).routes)
        if isinstance(route.original_route, APIRoute) and (route.path or "").startswith("/v1/")
    ]
    assert len(routes) == 14
    for route in routes:
        calls = _calls(route.dependant)
        budgets = {budget for call in calls if (budget := budget_of(call)) is not None}
        expected = Budget.READ if route.methods == {"GET"} else Budget.WRITE
        assert budgets == {expected}, f"{route.methods} {route.path} spends {budgets}"
        assert authenticate_request in calls, f"{route.methods} {route.path} does not authenticate"


@dataclass(frozen=True, slots=True)
class _Plan:
    cache_keys: tuple[str, ...] = ()


async def _plan() -> _Plan:
    return _Plan()


def _routes(method: str, path: str, endpoint: Any) -> list[BaseRoute]:
    app = FastAPI()
    router = APIRouter()
    router.add_api_route(path, endpoint, methods=[method])
    app.include_router(router)
    return list(app.routes)


async def _bare(principal: Authenticated) -> None: ...


async def _nobody() -> None: ...


async def _reads(principal: ReadPrincipal) -> None: ...


async def _writes(principal: WritePrincipal) -> None: ...


async def _reads_and_writes(reader: ReadPrincipal, writer: WritePrincipal) -> None: ...


async def _cached(
    read: Annotated[CachedRead[_Plan], Depends(read_through_cache(_plan))],
) -> None: ...


async def _plan_outside_the_read(
    principal: ReadPrincipal, plan: Annotated[ListPlan, Depends(plan_list)]
) -> None: ...


@pytest.mark.parametrize(
    ("method", "endpoint", "complaint"),
    [
        pytest.param("GET", _bare, "without spending a budget", id="bare-principal"),
        pytest.param("POST", _bare, "without spending a budget", id="bare-principal-write"),
        pytest.param(
            "GET", _plan_outside_the_read, "without spending a budget", id="plan-outside-the-read"
        ),
        pytest.param("GET", _nobody, "has no principal", id="no-principal"),
        pytest.param("GET", _writes, "only the read budget", id="get-spending-writes"),
        pytest.param("DELETE", _reads, "only the write budget", id="delete-spending-reads"),
        pytest.param("POST", _cached, "only the write budget", id="post-as-cached-read"),
        pytest.param("PATCH", _reads_and_writes, "spends read, write", id="both-budgets"),
    ],
)
def test_a_route_that_does_not_spend_its_budget_is_refused(
    method: str, endpoint: object, complaint: str
) -> None:
    with pytest.raises(UnmeteredRouteError, match=complaint) as refused:
        check_routes_spend(_routes(method, "/v1/things/{thing_id}", endpoint))
    assert f"{method} /v1/things/{{thing_id}}" in str(refused.value)


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        pytest.param("GET", "/v1/things", _reads, id="read"),
        pytest.param("GET", "/v1/things", _cached, id="cached-read"),
        pytest.param("POST", "/v1/things", _writes, id="write"),
        pytest.param("GET", "/livez", _nobody, id="outside-v1"),
        pytest.param("GET", "/v10/things", _nobody, id="a-path-that-only-starts-like-v1"),
    ],
)
def test_a_route_that_spends_its_budget_is_accepted(
    method: str, path: str, endpoint: object
) -> None:
    check_routes_spend(_routes(method, path, endpoint))
