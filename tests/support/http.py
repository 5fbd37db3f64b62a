"""Small helpers for talking to the API in tests: creating posts, reading versions and checking
problem bodies."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import ApiKey

PROBLEM_FIELDS = ("type", "title", "status", "detail", "request_id")


def unique_tag() -> str:
    """A tag no other test uses, so list queries filtered by it see only this test's posts."""
    return f"t-{uuid.uuid4().hex[:16]}"


async def create_post(client: httpx.AsyncClient, key: ApiKey, **fields: Any) -> dict[str, Any]:
    """Create a post (title and body default) and return its JSON representation."""
    payload = {"title": "A title", "body": "A body"} | fields
    response = await client.post("/v1/posts", json=payload, headers=key.headers)
    assert response.status_code == 201, response.text
    post: dict[str, Any] = response.json()
    return post


async def create_published(client: httpx.AsyncClient, key: ApiKey, **fields: Any) -> dict[str, Any]:
    """Create a published post (its events reach every consumer's cache path)."""
    return await create_post(client, key, **({"status": "published"} | fields))


def version_of(response: httpx.Response) -> int:
    """The post version a response carries, from its ETag (``"7"``, or ``"7-e"`` enriched)."""
    return int(response.headers["ETag"].strip('"').split("-")[0])


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem with ``status`` and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    missing = [name for name in PROBLEM_FIELDS if not body.get(name)]
    assert not missing, f"problem lacks {missing}: {body}"
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    assert body["request_id"] == response.headers["x-request-id"]
    return body
