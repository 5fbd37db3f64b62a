"""Bearer API keys (401s with a challenge) and what members and admins may do."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from herald_shared import accounts
from herald_shared.apikeys import Role
from tests.conftest import MakeKey
from tests.support.http import assert_problem, create_post


def assert_unauthorized(response: httpx.Response) -> dict[str, object]:
    problem = assert_problem(response, 401)
    assert problem["type"] == "/problems/unauthorized"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="herald"')
    return problem


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Bearer", id="scheme-only"),
        pytest.param("Bearer    ", id="blank-token"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param("Token hrld_abcdef012345_" + "s" * 43, id="other-scheme"),
        pytest.param("hrld_abcdef012345_" + "s" * 43, id="no-scheme"),
        pytest.param("Bearer not-a-herald-key", id="malformed-token"),
        pytest.param("Bearer hrld_abcdef012345_short", id="short-secret"),
        pytest.param("Bearer hrld_abcdef012345_" + "s" * 43, id="unknown-key"),
    ],
)
async def test_request_without_a_valid_key_is_401(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for response in (
        await client.get("/v1/posts", headers=headers),
        await client.post("/v1/posts", json={"title": "T", "body": "B"}, headers=headers),
    ):
        assert_unauthorized(response)


async def test_missing_key_challenge_has_no_error_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/posts")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="herald"'


async def test_invalid_key_challenge_says_invalid_token(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    response = await client.get(
        "/v1/posts", headers={"Authorization": "Bearer hrld_abcdef012345_" + "s" * 43}
    )
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_right_key_id_with_the_wrong_secret_is_401(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    forged = f"hrld_{key.key_id}_{'s' * 43}"
    assert forged != key.token
    assert_unauthorized(
        await client.get("/v1/posts", headers={"Authorization": f"Bearer {forged}"})
    )


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    response = await client.get("/v1/posts", headers={"Authorization": f"bearer {key.token}"})
    assert response.status_code == 200, response.text


async def test_revoked_key_is_401(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    post = await create_post(client, key)
    async with db_pool.acquire() as conn:
        assert await accounts.revoke_key(conn, key.key_id)
    problem = assert_unauthorized(await client.get(f"/v1/posts/{post['id']}", headers=key.headers))
    assert "revoked" in str(problem["detail"])


async def test_revoking_one_key_leaves_the_accounts_other_keys_working(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    first = await make_key()
    second = await make_key(account=first.account_name)
    assert second.account_id == first.account_id
    async with db_pool.acquire() as conn:
        await accounts.revoke_key(conn, first.key_id)
    assert_unauthorized(await client.get("/v1/posts", headers=first.headers))
    assert (await client.get("/v1/posts", headers=second.headers)).status_code == 200


async def test_health_probes_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


class TestMemberPermissions:
    async def test_member_may_change_and_delete_own_posts(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        key = await make_key()
        for status in ("draft", "published"):
            post = await create_post(client, key, status=status)
            url = f"/v1/posts/{post['id']}"
            assert (
                await client.patch(url, json={"title": "x"}, headers=key.headers)
            ).status_code == 200
            assert (await client.delete(url, headers=key.headers)).status_code == 204

    async def test_other_member_gets_404_changing_a_draft(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        author, other = await make_key(), await make_key()
        post = await create_post(client, author)
        url = f"/v1/posts/{post['id']}"
        assert_problem(await client.patch(url, json={"title": "x"}, headers=other.headers), 404)
        assert_problem(await client.delete(url, headers=other.headers), 404)
        assert (await client.get(url, headers=author.headers)).json() == post

    async def test_other_member_gets_403_changing_a_published_post(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        author, other = await make_key(), await make_key()
        post = await create_post(client, author, status="published")
        url = f"/v1/posts/{post['id']}"
        patched = await client.patch(url, json={"title": "x"}, headers=other.headers)
        assert assert_problem(patched, 403)["type"] == "/problems/forbidden"
        assert_problem(await client.delete(url, headers=other.headers), 403)
        assert (await client.get(url, headers=author.headers)).json() == post

    async def test_forbidden_is_checked_before_if_match(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        author, other = await make_key(), await make_key()
        post = await create_post(client, author, status="published")
        response = await client.delete(
            f"/v1/posts/{post['id']}", headers=other.headers | {"If-Match": '"1"'}
        )
        assert_problem(response, 403)

    async def test_member_keeps_authorship_of_own_posts(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        admin, member = await make_key(Role.ADMIN), await make_key()
        post = await create_post(client, member)
        patched = await client.patch(
            f"/v1/posts/{post['id']}", json={"title": "by admin"}, headers=admin.headers
        )
        assert patched.json()["author_id"] == str(member.account_id)


class TestAdminPermissions:
    async def test_admin_reads_any_draft(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        admin, member = await make_key(Role.ADMIN), await make_key()
        post = await create_post(client, member)
        response = await client.get(f"/v1/posts/{post['id']}", headers=admin.headers)
        assert response.status_code == 200
        assert response.json() == post

    @pytest.mark.parametrize("status", ["draft", "published"])
    async def test_admin_changes_and_deletes_any_post(
        self, client: httpx.AsyncClient, make_key: MakeKey, status: str
    ) -> None:
        admin, member = await make_key(Role.ADMIN), await make_key()
        post = await create_post(client, member, status=status)
        url = f"/v1/posts/{post['id']}"
        patched = await client.patch(url, json={"title": "moderated"}, headers=admin.headers)
        assert patched.status_code == 200, patched.text
        assert patched.json()["title"] == "moderated"
        assert (await client.delete(url, headers=admin.headers)).status_code == 204
        assert_problem(await client.get(url, headers=member.headers), 404)

    async def test_admin_posts_are_their_own(
        self, client: httpx.AsyncClient, make_key: MakeKey
    ) -> None:
        admin = await make_key(Role.ADMIN)
        post = await create_post(client, admin)
        assert post["author_id"] == str(admin.account_id)
