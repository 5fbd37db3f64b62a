"""Malformed requests of every kind: each is a 4xx problem with a request id, never a 5xx."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import MakeKey
from tests.support.http import assert_problem, create_post, unique_tag

NO_JSON = object()
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Case:
    """One malformed request. ``{post_id}``, ``{tag}``, ``{cursor}`` and ``{tampered}`` in the
    path and in query values are filled in with a real post, its tag and cursors for it."""

    method: str
    path: str
    status: int
    json: Any = NO_JSON
    content: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    #: str values, or raw bytes for headers httpx would refuse to encode.
    headers: dict[str, Any] = field(default_factory=dict)
    authenticated: bool = True


POSTS = "/v1/posts"
POST = "/v1/posts/{post_id}"
VALID = {"title": "T", "body": "B"}

CASES = [
    pytest.param(Case("POST", POSTS, 400, content=b'{"title": "x",', headers=JSON), id="bad-json"),
    pytest.param(
        Case("POST", POSTS, 400, content=b"{'title': 'x'}", headers=JSON), id="json-quotes"
    ),
    pytest.param(
        Case("POST", POSTS, 400, content=b'{"title": "\xff", "body": ""}', headers=JSON),
        id="not-utf8",
    ),
    pytest.param(
        Case("POST", POSTS, 400, content=b"[" * 100_000 + b"]" * 100_000, headers=JSON),
        id="json-nested-too-deep",
    ),
    pytest.param(Case("POST", POSTS, 422, json=[VALID]), id="json-array"),
    pytest.param(Case("POST", POSTS, 422, json="a post"), id="json-string"),
    pytest.param(Case("POST", POSTS, 422, content=b"null", headers=JSON), id="json-null"),
    pytest.param(Case("POST", POSTS, 422, content=b"", headers=JSON), id="empty-body"),
    pytest.param(Case("POST", POSTS, 422, json={"title": 5, "body": "B"}), id="title-int"),
    pytest.param(Case("POST", POSTS, 422, json=VALID | {"tags": "news"}), id="tags-string"),
    pytest.param(Case("POST", POSTS, 422, json=VALID | {"status": True}), id="status-bool"),
    pytest.param(Case("POST", POSTS, 422, json=VALID | {"title": 1e308}), id="title-float"),
    pytest.param(Case("POST", POSTS, 422, json={"title": "t" * 201, "body": ""}), id="title-201"),
    pytest.param(
        Case("POST", POSTS, 422, json={"title": "T", "body": "b" * 100_001}), id="body-100001"
    ),
    pytest.param(
        Case("POST", POSTS, 422, json=VALID | {"tags": [f"t{i}" for i in range(11)]}),
        id="eleven-tags",
    ),
    pytest.param(Case("POST", POSTS, 422, json=VALID | {"tags": ["Bad Tag"]}), id="tag-pattern"),
    pytest.param(Case("POST", POSTS, 422, json=VALID | {"tags": ["t" * 33]}), id="tag-33"),
    pytest.param(Case("POST", POSTS, 422, json=VALID | {"tags": ["a", "a"]}), id="tags-duplicate"),
    pytest.param(Case("POST", POSTS, 422, json=VALID | {"title": "a\x00"}), id="title-nul"),
    pytest.param(Case("POST", POSTS, 422, json=VALID | {"colour": "red"}), id="unknown-field"),
    pytest.param(
        Case("POST", POSTS, 422, json=VALID | {"id": "8b0f5c9e-6a43-4c8e-9a53-0c1f9d6f3a11"}),
        id="server-owned-id",
    ),
    pytest.param(Case("PATCH", POST, 422, json={"version": 5}), id="patch-server-owned-version"),
    pytest.param(
        Case("PATCH", POST, 422, json={"author_id": None}), id="patch-server-owned-author"
    ),
    pytest.param(Case("PATCH", POST, 422, json={}), id="patch-empty"),
    pytest.param(Case("PATCH", POST, 422, json={"title": None}), id="patch-null"),
    pytest.param(Case("GET", POSTS, 400, params={"cursor": "garbage"}), id="cursor-garbage"),
    pytest.param(
        Case("GET", POSTS, 400, params={"tag": "{tag}", "cursor": "{tampered}"}),
        id="cursor-tampered",
    ),
    pytest.param(
        Case("GET", POSTS, 400, params={"tag": "other", "cursor": "{cursor}"}),
        id="cursor-other-filters",
    ),
    pytest.param(Case("GET", POSTS, 422, params={"limit": "0"}), id="limit-0"),
    pytest.param(Case("GET", POSTS, 422, params={"limit": "101"}), id="limit-101"),
    pytest.param(Case("GET", POSTS, 422, params={"limit": "many"}), id="limit-word"),
    pytest.param(Case("GET", POSTS, 422, params={"author": "nobody"}), id="author-not-uuid"),
    pytest.param(Case("GET", POSTS, 422, params={"status": "gone"}), id="status-filter"),
    pytest.param(Case("GET", POSTS, 422, params={"tag": "UPPER"}), id="tag-filter"),
    pytest.param(Case("GET", "/v1/posts/not-a-uuid", 422), id="path-not-uuid"),
    pytest.param(
        Case("PATCH", "/v1/posts/1234", 422, json={"title": "x"}), id="patch-path-not-uuid"
    ),
    pytest.param(Case("DELETE", "/v1/posts/%00", 422), id="delete-path-nul"),
    pytest.param(
        Case("PATCH", POST, 400, json={"title": "x"}, headers={"If-Match": "v1"}),
        id="if-match-unquoted",
    ),
    pytest.param(Case("DELETE", POST, 400, headers={"If-Match": '"1'}), id="if-match-unterminated"),
    pytest.param(Case("GET", POST, 400, headers={"If-None-Match": "1,2"}), id="if-none-match-bad"),
    pytest.param(
        Case("POST", POSTS, 400, json=VALID, headers={"Idempotency-Key": "k" * 256}),
        id="idempotency-key-too-long",
    ),
    pytest.param(
        Case("POST", POSTS, 400, json=VALID, headers={"Idempotency-Key": "clé".encode()}),
        id="idempotency-key-non-ascii",
    ),
    pytest.param(
        Case(
            "POST",
            POSTS,
            415,
            content=b'{"title":"T","body":"B"}',
            headers={"Content-Type": "text/plain"},
        ),
        id="content-type-text",
    ),
    pytest.param(
        Case(
            "POST",
            POSTS,
            415,
            content=b"title=T&body=B",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        id="content-type-form",
    ),
    pytest.param(
        Case("PATCH", POST, 415, content=b'{"title":"T"}', headers={"Content-Type": "text/json"}),
        id="patch-content-type",
    ),
    pytest.param(
        Case("POST", POSTS, 413, content=b" " * (2 * 1024 * 1024), headers=JSON), id="body-2mib"
    ),
    pytest.param(
        Case("POST", POSTS, 401, json=VALID, headers={"Authorization": "Basic dTpw"}),
        id="auth-basic",
    ),
    pytest.param(Case("GET", POSTS, 401, authenticated=False), id="auth-missing"),
    pytest.param(
        Case("GET", POSTS, 401, headers={"Authorization": "Bearer hrld_nope"}), id="auth-malformed"
    ),
    pytest.param(Case("GET", "/v1/nothing-here", 404), id="unknown-path"),
    pytest.param(Case("GET", "/v1/posts/{post_id}/comments", 404), id="unknown-subpath"),
    pytest.param(Case("PUT", POST, 405, json=VALID), id="method-put"),
    pytest.param(Case("DELETE", POSTS, 405), id="method-delete-collection"),
    pytest.param(Case("POST", "/livez", 405), id="method-post-probe"),
]


def _fill(template: str, context: dict[str, str]) -> str:
    return template.format(**context)


@pytest.mark.parametrize("case", CASES)
async def test_malformed_request_is_a_4xx_problem(
    client: httpx.AsyncClient, make_key: MakeKey, case: Case
) -> None:
    key = await make_key()
    tag = unique_tag()
    post = await create_post(client, key, tags=[tag], status="published")
    await create_post(client, key, tags=[tag])
    page = await client.get(POSTS, params={"tag": tag, "limit": 1}, headers=key.headers)
    cursor = page.json()["next_cursor"]
    payload, mac = cursor.split(".")
    tampered = f"{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    context = {"post_id": post["id"], "tag": tag, "cursor": cursor, "tampered": tampered}

    headers: dict[str, Any] = (key.headers if case.authenticated else {}) | case.headers
    body: dict[str, Any] = {}
    if case.json is not NO_JSON:
        body["json"] = case.json
    if case.content is not None:
        body["content"] = case.content
    request = client.build_request(
        case.method,
        _fill(case.path, context),
        params={name: _fill(value, context) for name, value in case.params.items()},
        headers=headers,
        **body,
    )
    response = await client.send(request)

    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, case.status)
