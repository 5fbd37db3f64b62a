"""Probes and the OpenAPI document."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from herald_api.settings import Settings
from herald_shared.migrate import head_revision
from herald_shared.settings import DatabaseSettings, RelaySettings
from tests.support.apps import in_process_client
from tests.support.databases import create_database, drop_database, dsn_for


async def test_livez_is_200(client: httpx.AsyncClient) -> None:
    response = await client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_readyz_is_200_with_its_checks_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "schema": "ok"}


@pytest.fixture
async def unmigrated_settings(settings: Settings, database_dsn: str) -> AsyncIterator[Settings]:
    """Settings pointing at an empty database of this test's own (no migrations run)."""
    admin_dsn = os.environ.get("HERALD_DB_DSN", DatabaseSettings().dsn)
    name = f"herald_test_empty_{uuid.uuid4().hex[:8]}"
    await create_database(admin_dsn, name)
    try:
        yield replace(
            settings,
            db=DatabaseSettings(dsn=dsn_for(database_dsn, name), pool_min_size=1, pool_max_size=2),
            relay=RelaySettings(enabled=False),
        )
    finally:
        await drop_database(admin_dsn, name)


async def test_readyz_is_503_when_the_schema_is_not_migrated(
    unmigrated_settings: Settings,
) -> None:
    async with in_process_client(unmigrated_settings) as http:
        response = await http.get("/readyz")
        live = await http.get("/livez")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["schema"] != "ok"
    assert head_revision() in body["checks"]["schema"]
    assert live.status_code == 200


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
    ]


def test_openapi_lists_every_posts_operation(openapi: dict[str, Any]) -> None:
    found = {
        (method, path) for method, path, _ in operations(openapi) if path.startswith("/v1/posts")
    }
    assert found == {
        ("POST", "/v1/posts"),
        ("GET", "/v1/posts"),
        ("GET", "/v1/posts/{post_id}"),
        ("PATCH", "/v1/posts/{post_id}"),
        ("DELETE", "/v1/posts/{post_id}"),
    }


def test_openapi_documents_the_problem_schema(openapi: dict[str, Any]) -> None:
    schema = openapi["components"]["schemas"]["ProblemDetail"]
    assert {"type", "title", "status", "detail", "request_id"} <= set(schema["properties"])


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("POST", "/v1/posts", {"401", "413", "422"}),
        ("GET", "/v1/posts", {"400", "401", "422"}),
        ("GET", "/v1/posts/{post_id}", {"401", "404"}),
        ("PATCH", "/v1/posts/{post_id}", {"401", "403", "404", "412", "422"}),
        ("GET", "/v1/search", {"400", "401", "422"}),
        ("DELETE", "/v1/posts/{post_id}", {"401", "403", "404", "412"}),
    ],
)
def test_openapi_documents_problem_responses_as_problem_json(
    openapi: dict[str, Any], method: str, path: str, statuses: set[str]
) -> None:
    responses = openapi["paths"][path][method.lower()]["responses"]
    assert statuses <= set(responses), sorted(responses)
    for status in statuses:
        content = responses[status]["content"]
        problem = content.get("application/problem+json", {})
        assert problem.get("schema") == {"$ref": "#/components/schemas/ProblemDetail"}, (
            f"{method} {path} {status} documents {content}"
        )
        assert "application/json" not in content, (
            f"{method} {path} {status}: errors are never served as application/json"
        )


def test_openapi_documents_the_bearer_requirement(openapi: dict[str, Any]) -> None:
    assert "Authorization: Bearer" in openapi["info"]["description"]
