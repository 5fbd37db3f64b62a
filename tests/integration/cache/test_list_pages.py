"""First list pages every viewer sees alike are cached, and dropped when any post changes."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import MakeKey


async def test_a_published_first_page_is_cached_until_a_post_changes(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    tag = f"t{uuid.uuid4().hex[:8]}"
    first = await client.post(
        "/v1/posts",
        json={"title": "one", "body": "b", "tags": [tag], "status": "published"},
        headers=key.headers,
    )
    params = {"tag": tag, "status": "published"}

    miss = await client.get("/v1/posts", params=params, headers=key.headers)
    hit = await client.get("/v1/posts", params=params, headers=key.headers)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("miss", "hit")
    assert hit.content == miss.content
    assert [i["id"] for i in hit.json()["items"]] == [first.json()["id"]]

    # Any post change retires cached pages (here the API's own invalidation after commit).
    second = await client.post(
        "/v1/posts",
        json={"title": "two", "body": "b", "tags": [tag], "status": "published"},
        headers=key.headers,
    )
    after = await client.get("/v1/posts", params=params, headers=key.headers)
    assert after.headers["X-Cache"] == "miss"
    assert [i["id"] for i in after.json()["items"]] == [second.json()["id"], first.json()["id"]]


async def test_pages_that_depend_on_the_viewer_are_never_shared(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    author, other = await make_key(), await make_key()
    tag = f"t{uuid.uuid4().hex[:8]}"
    await client.post(
        "/v1/posts", json={"title": "draft", "body": "b", "tags": [tag]}, headers=author.headers
    )
    mine = await client.get("/v1/posts", params={"tag": tag}, headers=author.headers)
    theirs = await client.get("/v1/posts", params={"tag": tag}, headers=other.headers)
    assert len(mine.json()["items"]) == 1
    assert theirs.json()["items"] == []
    assert "X-Cache" not in mine.headers
    # Later pages are not cached either.
    assert (
        "X-Cache"
        not in (
            await client.get("/v1/posts", params={"tag": tag, "limit": 1}, headers=author.headers)
        ).headers
    )
