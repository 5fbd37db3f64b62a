"""The API serves the AsyncAPI document beside the OpenAPI document: the committed file, as
it is, without authentication."""

from __future__ import annotations

import httpx

from herald_shared.asyncapi import DOCUMENT_PATH


async def test_the_asyncapi_document_is_served_as_committed(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == DOCUMENT_PATH.read_bytes()
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    assert "post.created" in document["channels"]


async def test_it_is_not_an_operation_of_the_openapi_document(client: httpx.AsyncClient) -> None:
    openapi = (await client.get("/openapi.json")).json()
    assert "/asyncapi.json" not in openapi["paths"]
