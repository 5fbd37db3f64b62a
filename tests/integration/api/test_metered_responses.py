"""Every ``/v1`` response spends exactly one request of a budget and carries its RateLimit
headers: the routes' own answers, and the refusals made before any route ran — a declared
Content-Length over the limit (413), a body that is not JSON (400) or not JSON at all (415), a
path that fails validation (422), a cursor that is not one (400), an unknown path (404) or
method (405), an unexpected error (500), a database that is away (503). The cases are drawn
from the app's own route table, so a new route is covered when it is added.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from herald_api.access.principals import ReadPrincipal
from herald_api.app import create_app
from herald_api.settings import ServerSettings, Settings
from herald_shared.settings import RateLimitSettings, RedisSettings, RelaySettings
from tests.conftest import ApiKey, MakeKey
from tests.support.apps import CopyStatePerRequest, http_client, running_api
from tests.support.cache import REDIS_URL
from tests.support.http import assert_problem

BUDGET = 1000
MAX_BODY = 1024


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    path_params: tuple[str, ...]
    query_params: frozenset[str]
    has_body: bool

    def url(self, value: str | None = None) -> str:
        path = self.path
        for name in self.path_params:
            path = path.replace(f"{{{name}}}", value or str(uuid.uuid4()))
        return path


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def v1_routes(app: FastAPI) -> list[Route]:
    routes = []
    for context in iter_route_contexts(app.routes):
        path = context.path or ""
        if not isinstance(context.original_route, APIRoute) or not path.startswith("/v1/"):
            continue
        parts = list(_walk(context.dependant))
        for method in sorted(context.methods or ()):
            routes.append(
                Route(
                    method,
                    path,
                    tuple(sorted({p.name for d in parts for p in d.path_params})),
                    frozenset(p.name for d in parts for p in d.query_params),
                    any(d.body_params for d in parts),
                )
            )
    return routes


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    url: str
    statuses: frozenset[int]
    headers: dict[str, str]
    content: bytes | None = None
    params: dict[str, str] | None = None


JSON = {"Content-Type": "application/json"}


def early_refusals(routes: list[Route]) -> list[Case]:
    cases = []
    for route in routes:
        name = f"{route.method} {route.path}"
        cases.append(
            Case(
                f"{name} 413",
                route.method,
                route.url(),
                frozenset({413}),
                JSON,
                b"[" + b"0," * MAX_BODY + b"0]",
            )
        )
        if route.path_params:
            body = b"{}" if route.has_body else None
            cases.append(
                Case(
                    f"{name} 422",
                    route.method,
                    route.url("not-an-id"),
                    frozenset({422}),
                    JSON,
                    body,
                )
            )
        if route.has_body:
            cases.append(
                Case(
                    f"{name} 415",
                    route.method,
                    route.url(),
                    frozenset({415}),
                    {"Content-Type": "text/plain"},
                    b"title=x",
                )
            )
            cases.append(
                Case(f"{name} 400", route.method, route.url(), frozenset({400}), JSON, b'{"a":')
            )
        if "cursor" in route.query_params:
            # For a sub-resource of an id nobody has, 404 may come first: metered all the same.
            cases.append(
                Case(
                    f"{name} cursor",
                    route.method,
                    route.url(),
                    frozenset({400, 404}),
                    {},
                    params={"cursor": "not-a-cursor"},
                )
            )
    cases.append(Case("unknown path", "GET", "/v1/nothing-here", frozenset({404}), {}))
    cases.append(Case("unknown method", "PUT", "/v1/posts", frozenset({405}), {}))
    return cases


def metered_settings(settings: Settings, redis_prefix: str, *, reads: int = BUDGET) -> Settings:
    return replace(
        settings,
        server=ServerSettings(auth_cache_ttl_seconds=600, max_body_bytes=MAX_BODY),
        redis=RedisSettings(url=REDIS_URL, key_prefix=f"{redis_prefix}{uuid.uuid4().hex[:8]}:"),
        relay=RelaySettings(enabled=False),
        rate_limit=RateLimitSettings(
            window_seconds=3600,
            read_per_window=reads,
            write_per_window=BUDGET,
            anonymous_per_window=BUDGET,
        ),
    )


class Budgets:
    """The remaining budget each response announces must be one less than the last one of the
    same budget: exactly one request spent per response."""

    def __init__(self) -> None:
        self.remaining: dict[str, int] = {}

    def spent_one(self, method: str, response: httpx.Response, label: str) -> None:
        budget = "read" if method in ("GET", "HEAD") else "write"
        headers = response.headers
        assert headers.get("RateLimit-Limit") == str(BUDGET), f"{label}: {dict(headers)}"
        assert headers.get("RateLimit-Policy") == f"{BUDGET};w=3600", label
        assert headers.get("RateLimit-Reset"), label
        remaining = int(headers["RateLimit-Remaining"])
        expected = self.remaining.get(budget, BUDGET) - 1
        assert remaining == expected, f"{label}: {remaining} left, expected {expected}"
        self.remaining[budget] = remaining


async def send(http: httpx.AsyncClient, case: Case, key: ApiKey) -> httpx.Response:
    return await http.request(
        case.method,
        case.url,
        headers=key.headers | case.headers,
        content=case.content,
        params=case.params,
    )


async def test_every_early_refusal_of_every_v1_route_spends_the_budget(
    settings: Settings, redis_prefix: str, make_key: MakeKey
) -> None:
    key = await make_key()
    config = metered_settings(settings, redis_prefix)
    cases = early_refusals(v1_routes(create_app(config)))
    assert len(cases) >= 30
    budgets = Budgets()
    async with running_api(config) as api:
        for case in cases:
            response = await send(api.http, case, key)
            assert response.status_code in case.statuses, f"{case.id}: {response.text}"
            assert_problem(response, response.status_code)
            budgets.spent_one(case.method, response, case.id)


async def test_every_v1_route_answering_503_carries_its_budget(
    settings: Settings, redis_prefix: str, make_key: MakeKey
) -> None:
    key = await make_key()
    config = metered_settings(settings, redis_prefix)
    routes = v1_routes(create_app(config))
    budgets = Budgets()
    async with running_api(config) as api:
        first = await api.http.get("/v1/stats", headers=key.headers)  # the key, verified
        budgets.spent_one("GET", first, "first")
        await api.state.db.primary.close()
        unavailable = 0
        for route in routes:
            body = b"{}" if route.has_body else None
            case = Case(route.path, route.method, route.url(), frozenset({503}), JSON, body)
            response = await send(api.http, case, key)
            label = f"{route.method} {route.path}"
            # Some answers need no database (a validation error, say): metered too.
            assert response.status_code in (400, 404, 422, 503), f"{label}: {response.text}"
            budgets.spent_one(route.method, response, label)
            unavailable += response.status_code == 503
        assert unavailable >= len(routes) // 2


async def test_an_early_refusal_over_the_limit_becomes_429(
    settings: Settings, redis_prefix: str, make_key: MakeKey
) -> None:
    key = await make_key()
    async with running_api(metered_settings(settings, redis_prefix, reads=2)) as api:
        statuses = []
        for _ in range(3):
            response = await api.http.get(
                "/v1/posts", params={"cursor": "not-a-cursor"}, headers=key.headers
            )
            statuses.append(response.status_code)
        assert statuses == [400, 400, 429]
        assert_problem(response, 429)
        assert response.headers["RateLimit-Remaining"] == "0"
        assert int(response.headers["Retry-After"]) >= 1
        unknown = await api.http.get("/v1/nothing-here", headers=key.headers)
        assert_problem(unknown, 429)


async def _explode() -> None:
    raise RuntimeError("a bug")


@asynccontextmanager
async def app_with_a_broken_route(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus one ``/v1`` route that fails before its principal is resolved."""
    app = create_app(settings)

    async def broken(principal: ReadPrincipal) -> dict[str, Any]:
        return {}

    app.add_api_route("/v1/broken", broken, methods=["GET"], dependencies=[Depends(_explode)])
    async with (
        LifespanManager(CopyStatePerRequest(app)) as manager,
        http_client(manager.app, "127.0.0.1") as http,
    ):
        yield http


async def test_an_unexpected_error_answers_500_with_the_budget_spent(
    settings: Settings, redis_prefix: str, make_key: MakeKey
) -> None:
    key = await make_key()
    async with app_with_a_broken_route(metered_settings(settings, redis_prefix)) as http:
        response = await http.get("/v1/broken", headers=key.headers)
    assert_problem(response, 500)
    Budgets().spent_one("GET", response, "500")
