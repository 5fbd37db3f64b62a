"""``GET /v1/posts``: newest first, filters, visibility and keyset pagination with cursors."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from herald_shared.apikeys import Role
from tests.conftest import ApiKey, MakeKey
from tests.support.http import assert_problem, create_post, unique_tag


def newest_first(posts: list[dict[str, Any]]) -> list[str]:
    """The ids of ``posts`` in the API's order: created_at, then id, both descending."""
    ordered = sorted(
        posts,
        key=lambda p: (datetime.fromisoformat(p["created_at"]), uuid.UUID(p["id"])),
        reverse=True,
    )
    return [p["id"] for p in ordered]


async def list_page(client: httpx.AsyncClient, key: ApiKey, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/posts", params=params, headers=key.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def all_pages(
    client: httpx.AsyncClient, key: ApiKey, max_pages: int = 50, **params: Any
) -> list[list[str]]:
    """Follow ``next_cursor`` to the end; each page as the list of its ids."""
    pages: list[list[str]] = []
    cursor = None
    for _ in range(max_pages):
        query = params | ({"cursor": cursor} if cursor else {})
        page = await list_page(client, key, **query)
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError(f"no last page after {max_pages} pages")


async def first_cursor(client: httpx.AsyncClient, key: ApiKey, **params: Any) -> str:
    page = await list_page(client, key, limit=1, **params)
    assert page["next_cursor"], "need at least two posts for a cursor"
    cursor: str = page["next_cursor"]
    return cursor


async def test_paging_yields_every_visible_post_once_newest_first(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    me, other = await make_key(), await make_key()
    tag = unique_tag()
    visible = [
        await create_post(client, me, tags=[tag], status="draft"),
        await create_post(client, other, tags=[tag], status="published"),
        await create_post(client, me, tags=[tag], status="published"),
        await create_post(client, other, tags=[tag], status="published"),
        await create_post(client, me, tags=[tag], status="draft"),
        await create_post(client, other, tags=[tag], status="published"),
        await create_post(client, me, tags=[tag], status="published"),
    ]
    await create_post(client, other, tags=[tag], status="draft")
    pages = await all_pages(client, me, tag=tag, limit=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [post_id for page in pages for post_id in page] == newest_first(visible)


async def test_ties_on_created_at_are_ordered_by_id_and_paged_exactly_once(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    tag = unique_tag()
    posts = [await create_post(client, key, tags=[tag]) for _ in range(7)]
    await db_pool.execute(
        "UPDATE posts SET created_at = '2026-01-01T00:00:00Z' WHERE id = ANY($1::uuid[])",
        [uuid.UUID(p["id"]) for p in posts],
    )
    pages = await all_pages(client, key, tag=tag, limit=2)
    assert [len(page) for page in pages] == [2, 2, 2, 1]
    ids = [post_id for page in pages for post_id in page]
    assert ids == sorted((p["id"] for p in posts), key=uuid.UUID, reverse=True)


async def test_next_cursor_is_null_when_the_last_page_is_exactly_full(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    tag = unique_tag()
    for _ in range(4):
        await create_post(client, key, tags=[tag])
    pages = await all_pages(client, key, tag=tag, limit=2)
    assert [len(page) for page in pages] == [2, 2]


async def test_empty_result_has_no_cursor(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    page = await list_page(client, key, tag=unique_tag())
    assert page == {"items": [], "next_cursor": None}


async def test_default_limit_is_20(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    tag = unique_tag()
    for _ in range(21):
        await create_post(client, key, tags=[tag])
    page = await list_page(client, key, tag=tag)
    assert len(page["items"]) == 20
    assert page["next_cursor"] is not None
    rest = await list_page(client, key, tag=tag, cursor=page["next_cursor"])
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


@pytest.mark.parametrize("limit", [1, 100])
async def test_limit_bounds_are_accepted(
    client: httpx.AsyncClient, make_key: MakeKey, limit: int
) -> None:
    key = await make_key()
    page = await list_page(client, key, limit=limit)
    assert len(page["items"]) <= limit


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5", ""])
async def test_limit_out_of_bounds_is_422(
    client: httpx.AsyncClient, make_key: MakeKey, limit: str
) -> None:
    key = await make_key()
    response = await client.get("/v1/posts", params={"limit": limit}, headers=key.headers)
    assert_problem(response, 422)


async def test_a_cursor_may_be_followed_with_another_limit(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    tag = unique_tag()
    posts = [await create_post(client, key, tags=[tag]) for _ in range(5)]
    first = await list_page(client, key, tag=tag, limit=1)
    rest = await list_page(client, key, tag=tag, limit=10, cursor=first["next_cursor"])
    ids = [first["items"][0]["id"]] + [item["id"] for item in rest["items"]]
    assert ids == newest_first(posts)


async def test_writes_between_pages_cause_no_duplicates_or_gaps(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    tag = unique_tag()
    posts = [await create_post(client, key, tags=[tag]) for _ in range(6)]
    first = await list_page(client, key, tag=tag, limit=3)
    await create_post(client, key, tags=[tag])
    rest = await list_page(client, key, tag=tag, limit=3, cursor=first["next_cursor"])
    ids = [item["id"] for item in first["items"] + rest["items"]]
    assert ids == newest_first(posts)


class TestFilters:
    async def test_author_filter_shows_another_members_published_posts_only(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me, author = await make_key(), await make_key()
        published = [await create_post(client, author, status="published") for _ in range(2)]
        await create_post(client, author, status="draft")
        page = await list_page(client, me, author=str(author.account_id))
        assert [item["id"] for item in page["items"]] == newest_first(published)

    async def test_author_filter_on_myself_includes_my_drafts(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me = await make_key()
        mine = [
            await create_post(client, me, status="draft"),
            await create_post(client, me, status="published"),
        ]
        page = await list_page(client, me, author=str(me.account_id))
        assert [item["id"] for item in page["items"]] == newest_first(mine)
        assert all(item["author_id"] == str(me.account_id) for item in page["items"])

    async def test_status_draft_shows_only_my_drafts(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me, other = await make_key(), await make_key()
        tag = unique_tag()
        draft = await create_post(client, me, tags=[tag], status="draft")
        await create_post(client, me, tags=[tag], status="published")
        await create_post(client, other, tags=[tag], status="draft")
        page = await list_page(client, me, tag=tag, status="draft")
        assert [item["id"] for item in page["items"]] == [draft["id"]]

    async def test_status_draft_of_another_author_is_empty_for_a_member(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me, other = await make_key(), await make_key()
        await create_post(client, other, status="draft")
        page = await list_page(client, me, author=str(other.account_id), status="draft")
        assert page == {"items": [], "next_cursor": None}

    async def test_status_published_filters_out_my_drafts(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me, other = await make_key(), await make_key()
        tag = unique_tag()
        published = [
            await create_post(client, me, tags=[tag], status="published"),
            await create_post(client, other, tags=[tag], status="published"),
        ]
        await create_post(client, me, tags=[tag], status="draft")
        page = await list_page(client, me, tag=tag, status="published")
        assert [item["id"] for item in page["items"]] == newest_first(published)

    async def test_tag_filter_matches_any_of_a_posts_tags(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me = await make_key()
        tag, other_tag = unique_tag(), unique_tag()
        tagged = [
            await create_post(client, me, tags=[tag]),
            await create_post(client, me, tags=[other_tag, tag]),
        ]
        await create_post(client, me, tags=[other_tag])
        page = await list_page(client, me, tag=tag)
        assert [item["id"] for item in page["items"]] == newest_first(tagged)

    async def test_author_tag_and_status_combine(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me, other = await make_key(), await make_key()
        tag = unique_tag()
        wanted = await create_post(client, other, tags=[tag], status="published")
        await create_post(client, other, tags=[unique_tag()], status="published")
        await create_post(client, me, tags=[tag], status="published")
        page = await list_page(
            client, me, author=str(other.account_id), tag=tag, status="published"
        )
        assert [item["id"] for item in page["items"]] == [wanted["id"]]

    async def test_unfiltered_member_listing_never_shows_others_drafts(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me, other = await make_key(), await make_key()
        mine = await create_post(client, me, status="draft")
        theirs = await create_post(client, other, status="draft")
        page = await list_page(client, me, limit=100)
        ids = [item["id"] for item in page["items"]]
        assert mine["id"] in ids
        assert theirs["id"] not in ids
        for item in page["items"]:
            assert item["status"] == "published" or item["author_id"] == str(me.account_id)

    async def test_admin_sees_everyones_drafts(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        admin, member = await make_key(Role.ADMIN), await make_key()
        tag = unique_tag()
        posts = [
            await create_post(client, member, tags=[tag], status="draft"),
            await create_post(client, member, tags=[tag], status="published"),
        ]
        page = await list_page(client, admin, tag=tag)
        assert [item["id"] for item in page["items"]] == newest_first(posts)
        drafts = await list_page(client, admin, author=str(member.account_id), status="draft")
        assert [item["id"] for item in drafts["items"]] == [posts[0]["id"]]

    async def test_deleted_posts_are_not_listed(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        me = await make_key()
        tag = unique_tag()
        kept = await create_post(client, me, tags=[tag])
        gone = await create_post(client, me, tags=[tag])
        await client.delete(f"/v1/posts/{gone['id']}", headers=me.headers)
        page = await list_page(client, me, tag=tag)
        assert [item["id"] for item in page["items"]] == [kept["id"]]

    @pytest.mark.parametrize(
        "params",
        [
            pytest.param({"author": "not-a-uuid"}, id="author-not-uuid"),
            pytest.param({"tag": "Upper"}, id="tag-pattern"),
            pytest.param({"tag": "a" * 33}, id="tag-too-long"),
            pytest.param({"status": "archived"}, id="unknown-status"),
        ],
    )
    async def test_invalid_filters_are_422(
        self, client: httpx.AsyncClient, make_key: MakeKey, params: dict[str, str]
    ) -> None:
        key = await make_key()
        response = await client.get("/v1/posts", params=params, headers=key.headers)
        assert_problem(response, 422)


class TestCursors:
    async def test_cursor_is_opaque(self, client: httpx.AsyncClient, make_key: MakeKey) -> None:
        key = await make_key()
        tag = unique_tag()
        posts = [await create_post(client, key, tags=[tag]) for _ in range(2)]
        cursor = await first_cursor(client, key, tag=tag)
        assert all(p["id"] not in cursor for p in posts)
        assert all(c.isalnum() or c in "-_." for c in cursor)

    @pytest.mark.parametrize(
        "cursor",
        [
            pytest.param("garbage", id="garbage"),
            pytest.param("a.b", id="two-parts"),
            pytest.param("a.b.c", id="three-parts"),
            pytest.param("%%%.%%%", id="not-base64"),
            pytest.param("", id="empty"),
            pytest.param("x" * 600, id="overlong"),
        ],
    )
    async def test_malformed_cursor_is_400(
        self, client: httpx.AsyncClient, make_key: MakeKey, cursor: str
    ) -> None:
        key = await make_key()
        response = await client.get("/v1/posts", params={"cursor": cursor}, headers=key.headers)
        problem = assert_problem(response, 400)
        assert problem["type"] == "/problems/invalid-cursor"

    @pytest.mark.parametrize("part", ["payload", "mac"])
    async def test_tampered_cursor_is_400(
        self, client: httpx.AsyncClient, make_key: MakeKey, part: str
    ) -> None:
        key = await make_key()
        tag = unique_tag()
        for _ in range(3):
            await create_post(client, key, tags=[tag])
        payload, mac = (await first_cursor(client, key, tag=tag)).split(".")
        if part == "payload":
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            payload = base64.urlsafe_b64encode(raw.replace(b'"c":"2', b'"c":"1')).decode()
            payload = payload.rstrip("=")
        else:
            mac = ("A" if mac[0] != "A" else "B") + mac[1:]
        response = await client.get(
            "/v1/posts", params={"tag": tag, "cursor": f"{payload}.{mac}"}, headers=key.headers
        )
        problem = assert_problem(response, 400)
        assert problem["type"] == "/problems/invalid-cursor"

    @pytest.mark.parametrize(
        "changed",
        [
            pytest.param({"tag": "other-tag"}, id="tag"),
            pytest.param({"status": "published"}, id="status-added"),
            pytest.param({"author": "00000000-0000-0000-0000-000000000001"}, id="author-added"),
            pytest.param({"tag": None}, id="tag-removed"),
        ],
    )
    async def test_cursor_reused_with_other_filters_is_400(
        self, client: httpx.AsyncClient, make_key: MakeKey, changed: dict[str, str | None]
    ) -> None:
        key = await make_key()
        tag = unique_tag()
        for _ in range(3):
            await create_post(client, key, tags=[tag])
        cursor = await first_cursor(client, key, tag=tag)
        params = {"tag": tag, "cursor": cursor} | changed
        response = await client.get(
            "/v1/posts",
            params={name: value for name, value in params.items() if value is not None},
            headers=key.headers,
        )
        problem = assert_problem(response, 400)
        assert problem["type"] == "/problems/invalid-cursor"

    async def test_listing_requires_a_key(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/posts"), 401)
