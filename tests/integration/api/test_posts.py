"""Creating, reading, changing and deleting posts; their fields, ETags and limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from herald_api.posts.schemas import MAX_BODY_CHARS, MAX_TAGS, MAX_TITLE_CHARS
from tests.conftest import MakeKey
from tests.support.http import assert_problem, create_post

ONE_MIB = 1024 * 1024


async def test_create_answers_201_with_location_etag_and_the_post(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    response = await client.post(
        "/v1/posts",
        json={"title": "Hello", "body": "World", "tags": ["intro", "news"]},
        headers=key.headers,
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    post = response.json()
    assert response.headers["Location"] == f"/v1/posts/{post['id']}"
    assert response.headers["ETag"] == '"1"'
    assert uuid.UUID(post["id"])
    assert post["author_id"] == str(key.account_id)
    assert post["title"] == "Hello"
    assert post["body"] == "World"
    assert post["tags"] == ["intro", "news"]
    assert post["status"] == "draft"
    assert post["version"] == 1
    assert post["created_at"] == post["updated_at"]
    assert datetime.fromisoformat(post["created_at"]).tzinfo is not None
    assert post["published_at"] is None


async def test_created_post_is_read_back_at_its_location(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    created = await client.post(
        "/v1/posts", json={"title": "Hi", "body": "there"}, headers=key.headers
    )
    got = await client.get(created.headers["Location"], headers=key.headers)
    assert got.status_code == 200
    assert got.json() == created.json()
    assert got.headers["ETag"] == '"1"'


async def test_creating_a_published_post_sets_published_at(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key, status="published")
    assert post["status"] == "published"
    assert post["published_at"] is not None


async def test_text_round_trips_unchanged(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    title = '  Ünïcødé 🎉 <b>&amp;</b> "quotes" \\ '
    body = "line one\nline two\r\n\ttabbed — emoji 🧪 and 中文"
    post = await create_post(client, key, title=title, body=body)
    got = (await client.get(f"/v1/posts/{post['id']}", headers=key.headers)).json()
    assert got["title"] == title
    assert got["body"] == body


async def test_patch_changes_only_the_given_fields(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key, title="Old", body="Body", tags=["a"])
    response = await client.patch(
        f"/v1/posts/{post['id']}", json={"title": "New"}, headers=key.headers
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert response.headers["ETag"] == '"2"'
    assert patched["title"] == "New"
    assert patched["body"] == "Body"
    assert patched["tags"] == ["a"]
    assert patched["version"] == 2
    assert patched["created_at"] == post["created_at"]
    assert patched["updated_at"] > post["updated_at"]
    got = await client.get(f"/v1/posts/{post['id']}", headers=key.headers)
    assert got.json() == patched


async def test_patch_can_clear_tags_and_empty_the_body(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key, tags=["a", "b"])
    response = await client.patch(
        f"/v1/posts/{post['id']}", json={"tags": [], "body": ""}, headers=key.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == []
    assert response.json()["body"] == ""


async def test_publishing_a_draft_sets_published_at(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    response = await client.patch(
        f"/v1/posts/{post['id']}", json={"status": "published"}, headers=key.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "published"
    assert response.json()["published_at"] is not None


async def test_unpublishing_clears_published_at(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key, status="published")
    response = await client.patch(
        f"/v1/posts/{post['id']}", json={"status": "draft"}, headers=key.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "draft"
    assert response.json()["published_at"] is None


async def test_a_no_op_patch_keeps_the_version(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key, title="Same", tags=["x", "y"])
    response = await client.patch(
        f"/v1/posts/{post['id']}",
        json={"title": "Same", "tags": ["x", "y"], "status": "draft"},
        headers=key.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"1"'
    assert response.json() == post


async def test_reordering_tags_is_a_change(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    post = await create_post(client, key, tags=["x", "y"])
    response = await client.patch(
        f"/v1/posts/{post['id']}", json={"tags": ["y", "x"]}, headers=key.headers
    )
    assert response.json()["tags"] == ["y", "x"]
    assert response.headers["ETag"] == '"2"'


async def test_delete_answers_204_and_the_post_is_gone(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key, status="published")
    url = f"/v1/posts/{post['id']}"
    deleted = await client.delete(url, headers=key.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(await client.get(url, headers=key.headers), 404)
    assert_problem(await client.patch(url, json={"title": "x"}, headers=key.headers), 404)
    assert_problem(await client.delete(url, headers=key.headers), 404)


async def test_unknown_post_is_404(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    problem = assert_problem(
        await client.get(f"/v1/posts/{uuid.uuid4()}", headers=key.headers), 404
    )
    assert problem["type"] == "/problems/not-found"


@pytest.mark.parametrize(
    "field",
    ["id", "author_id", "version", "created_at", "updated_at", "published_at", "colour"],
)
async def test_server_owned_and_unknown_fields_are_refused_on_create(
    client: httpx.AsyncClient, make_key: MakeKey, field: str
) -> None:
    key = await make_key()
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "author_id": str(uuid.uuid4()),
        "version": 9,
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
        "published_at": "2020-01-01T00:00:00Z",
        "colour": "red",
    }
    response = await client.post(
        "/v1/posts",
        json={"title": "T", "body": "B", field: values[field]},
        headers=key.headers,
    )
    problem = assert_problem(response, 422)
    assert ["body", field] in [e["loc"] for e in problem["errors"]]


@pytest.mark.parametrize(
    "field", ["id", "author_id", "version", "created_at", "updated_at", "published_at", "colour"]
)
async def test_server_owned_and_unknown_fields_are_refused_on_patch(
    client: httpx.AsyncClient, make_key: MakeKey, field: str
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    response = await client.patch(
        f"/v1/posts/{post['id']}", json={field: post.get(field, "x")}, headers=key.headers
    )
    assert_problem(response, 422)
    got = (await client.get(f"/v1/posts/{post['id']}", headers=key.headers)).json()
    assert got == post


class TestDraftVisibility:
    async def test_author_sees_own_draft(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        assert (await client.get(f"/v1/posts/{post['id']}", headers=key.headers)).status_code == 200

    async def test_other_member_gets_404_for_a_draft(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        author, other = await make_key(), await make_key()
        post = await create_post(client, author)
        response = await client.get(f"/v1/posts/{post['id']}", headers=other.headers)
        problem = assert_problem(response, 404)
        assert post["title"] not in response.text
        unknown = assert_problem(
            await client.get(f"/v1/posts/{uuid.uuid4()}", headers=other.headers), 404
        )
        assert problem["detail"] == unknown["detail"], "a hidden draft must look like no post"

    async def test_other_member_sees_a_published_post(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        author, other = await make_key(), await make_key()
        post = await create_post(client, author, status="published")
        response = await client.get(f"/v1/posts/{post['id']}", headers=other.headers)
        assert response.status_code == 200
        assert response.json() == post

    async def test_unpublished_post_disappears_for_others(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        author, other = await make_key(), await make_key()
        post = await create_post(client, author, status="published")
        url = f"/v1/posts/{post['id']}"
        await client.patch(url, json={"status": "draft"}, headers=author.headers)
        assert_problem(await client.get(url, headers=other.headers), 404)


class TestConditionalRequests:
    async def test_if_none_match_current_etag_is_304(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        response = await client.get(
            f"/v1/posts/{post['id']}", headers=key.headers | {"If-None-Match": '"1"'}
        )
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["ETag"] == '"1"'

    async def test_if_none_match_weak_etag_is_304(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        response = await client.get(
            f"/v1/posts/{post['id']}", headers=key.headers | {"If-None-Match": 'W/"1"'}
        )
        assert response.status_code == 304

    async def test_if_none_match_stale_etag_is_200(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        url = f"/v1/posts/{post['id']}"
        await client.patch(url, json={"title": "Changed"}, headers=key.headers)
        response = await client.get(url, headers=key.headers | {"If-None-Match": '"1"'})
        assert response.status_code == 200
        assert response.headers["ETag"] == '"2"'
        assert response.json()["title"] == "Changed"

    async def test_if_none_match_does_not_reveal_a_hidden_draft(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        author, other = await make_key(), await make_key()
        post = await create_post(client, author)
        response = await client.get(
            f"/v1/posts/{post['id']}", headers=other.headers | {"If-None-Match": '"1"'}
        )
        assert_problem(response, 404)

    async def test_patch_with_current_if_match_applies(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        response = await client.patch(
            f"/v1/posts/{post['id']}",
            json={"title": "New"},
            headers=key.headers | {"If-Match": '"1"'},
        )
        assert response.status_code == 200, response.text
        assert response.headers["ETag"] == '"2"'

    @pytest.mark.parametrize("if_match", ['"1"', 'W/"2"', '"7", "1"'])
    async def test_patch_with_stale_if_match_is_412(
        self, client: httpx.AsyncClient, make_key: MakeKey, if_match: str
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        url = f"/v1/posts/{post['id']}"
        await client.patch(url, json={"title": "Second"}, headers=key.headers)
        response = await client.patch(
            url, json={"title": "Third"}, headers=key.headers | {"If-Match": if_match}
        )
        assert_problem(response, 412)
        assert response.headers["ETag"] == '"2"'
        got = (await client.get(url, headers=key.headers)).json()
        assert got["title"] == "Second"
        assert got["version"] == 2

    async def test_patch_with_if_match_star_applies(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        response = await client.patch(
            f"/v1/posts/{post['id']}",
            json={"title": "New"},
            headers=key.headers | {"If-Match": "*"},
        )
        assert response.status_code == 200

    async def test_delete_with_stale_if_match_is_412_and_keeps_the_post(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        url = f"/v1/posts/{post['id']}"
        await client.patch(url, json={"title": "Second"}, headers=key.headers)
        response = await client.delete(url, headers=key.headers | {"If-Match": '"1"'})
        assert_problem(response, 412)
        assert (await client.get(url, headers=key.headers)).status_code == 200

    async def test_delete_with_current_if_match_deletes(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        url = f"/v1/posts/{post['id']}"
        response = await client.delete(url, headers=key.headers | {"If-Match": '"1"'})
        assert response.status_code == 204
        assert_problem(await client.get(url, headers=key.headers), 404)

    async def test_malformed_if_match_is_400(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        post = await create_post(client, key)
        response = await client.patch(
            f"/v1/posts/{post['id']}", json={"title": "x"}, headers=key.headers | {"If-Match": "1"}
        )
        assert_problem(response, 400)


async def test_title_at_the_limit_is_accepted_and_one_more_refused(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    await create_post(client, key, title="t" * MAX_TITLE_CHARS)
    response = await client.post(
        "/v1/posts", json={"title": "t" * (MAX_TITLE_CHARS + 1), "body": ""}, headers=key.headers
    )
    problem = assert_problem(response, 422)
    assert ["body", "title"] in [e["loc"] for e in problem["errors"]]


async def test_body_at_the_limit_is_accepted_and_one_more_refused(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key, body="b" * MAX_BODY_CHARS)
    assert len(post["body"]) == MAX_BODY_CHARS
    response = await client.post(
        "/v1/posts", json={"title": "T", "body": "b" * (MAX_BODY_CHARS + 1)}, headers=key.headers
    )
    assert_problem(response, 422)


async def test_limits_count_characters_not_bytes(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key, title="🎉" * MAX_TITLE_CHARS, body="é" * MAX_BODY_CHARS)
    assert post["title"] == "🎉" * MAX_TITLE_CHARS


async def test_tag_limits(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    most = [f"tag-{i}" for i in range(MAX_TAGS)]
    assert (await create_post(client, key, tags=most))["tags"] == most
    assert (await create_post(client, key, tags=["a" * 32]))["tags"] == ["a" * 32]
    for tags in ([*most, "one-more"], ["a" * 33], ["Upper"], ["dup", "dup"], ["sp ace"], [""]):
        response = await client.post(
            "/v1/posts", json={"title": "T", "body": "B", "tags": tags}, headers=key.headers
        )
        assert_problem(response, 422)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"title": "a\u0000b", "body": "B"}, id="nul-in-title"),
        pytest.param({"title": "T", "body": "a\u0000b"}, id="nul-in-body"),
        pytest.param({"title": "   ", "body": "B"}, id="blank-title"),
        pytest.param({"title": "T", "body": 5}, id="body-int"),
        pytest.param({"title": "T", "body": "B", "status": "archived"}, id="bad-status"),
        pytest.param({"title": "T", "body": "B", "tags": "news"}, id="tags-string"),
        pytest.param({"title": "T"}, id="no-body"),
    ],
)
async def test_invalid_create_is_422_and_creates_nothing(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool, payload: dict[str, Any]
) -> None:
    key = await make_key()
    assert_problem(await client.post("/v1/posts", json=payload, headers=key.headers), 422)
    count = await db_pool.fetchval(
        "SELECT count(*) FROM posts WHERE author_id = $1", key.account_id
    )
    assert count == 0


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="empty"),
        pytest.param({"title": None}, id="null-title"),
        pytest.param({"tags": None}, id="null-tags"),
        pytest.param({"status": None}, id="null-status"),
        pytest.param({"title": ""}, id="empty-title"),
        pytest.param({"tags": ["x", "x"]}, id="duplicate-tags"),
    ],
)
async def test_invalid_patch_is_422_and_changes_nothing(
    client: httpx.AsyncClient, make_key: MakeKey, payload: dict[str, Any]
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    url = f"/v1/posts/{post['id']}"
    assert_problem(await client.patch(url, json=payload, headers=key.headers), 422)
    assert (await client.get(url, headers=key.headers)).json() == post


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = min(size, total - sent)
        sent += chunk
        yield b" " * chunk


async def test_body_over_1_mib_with_content_length_is_413(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    response = await client.post(
        "/v1/posts",
        content=b" " * (ONE_MIB + 1),
        headers=key.headers | {"Content-Type": "application/json"},
    )
    assert_problem(response, 413)


async def test_chunked_body_over_1_mib_is_413(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    request = client.build_request(
        "POST",
        "/v1/posts",
        content=_chunks(ONE_MIB + 1),
        headers=key.headers | {"Content-Type": "application/json"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    assert_problem(await client.send(request), 413)


async def test_chunked_patch_over_1_mib_is_413(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    request = client.build_request(
        "PATCH",
        f"/v1/posts/{post['id']}",
        content=_chunks(2 * ONE_MIB),
        headers=key.headers | {"Content-Type": "application/json"},
    )
    assert_problem(await client.send(request), 413)


async def test_chunked_body_under_the_limit_is_accepted(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    payload = b'{"title": "chunked", "body": "' + b"x" * MAX_BODY_CHARS + b'"}'

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    response = await client.post(
        "/v1/posts", content=stream(), headers=key.headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text


async def test_every_response_carries_a_request_id(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    responses = [
        await client.get("/livez"),
        await client.get(f"/v1/posts/{post['id']}", headers=key.headers),
        await client.get(f"/v1/posts/{post['id']}", headers=key.headers | {"If-None-Match": "*"}),
        await client.delete(f"/v1/posts/{post['id']}", headers=key.headers),
        await client.get("/v1/posts"),
    ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)


async def test_a_valid_client_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/posts", headers={"X-Request-ID": "client-chosen.id:42"})
    assert response.headers["x-request-id"] == "client-chosen.id:42"
    assert response.json()["request_id"] == "client-chosen.id:42"


@pytest.mark.parametrize("request_id", ["has space", "x" * 129, "semi;colon", ""])
async def test_an_invalid_client_request_id_is_replaced(
    client: httpx.AsyncClient, request_id: str
) -> None:
    response = await client.get("/livez", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] not in ("", request_id)


async def test_wrong_method_is_a_405_problem_naming_the_allowed_ones(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    response = await client.put(f"/v1/posts/{uuid.uuid4()}", json={}, headers=key.headers)
    assert_problem(response, 405)
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed >= {"GET", "PATCH", "DELETE"}


async def test_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.get("/v2/posts"), 404)
    assert problem["instance"] == "/v2/posts"
