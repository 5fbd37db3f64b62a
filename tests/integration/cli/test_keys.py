"""``herald keys create/list/revoke`` run as commands, and the API's view of the keys they make.

The API runs in-process with no authentication cache (``auth_cache_ttl_seconds=0``), so a
revoked key is refused on its next request.
"""

from __future__ import annotations

import re
import uuid

import asyncpg
import httpx

from tests.conftest import MakeKey
from tests.support.cli import CliResult, run_herald
from tests.support.http import create_post


async def herald(database_dsn: str, *args: str) -> CliResult:
    return await run_herald(list(args), {"HERALD_DB_DSN": database_dsn})


def created_key(result: CliResult, account: str, role: str) -> tuple[str, str]:
    """The key id and the token ``keys create`` printed (the token alone on the last line)."""
    assert result.code == 0, result.output
    announcement, token = result.out.splitlines()
    pattern = rf"created key (\S+) for account {re.escape(repr(account))} with role {role}"
    match = re.fullmatch(pattern, announcement)
    assert match, result.out
    assert "store it now" in result.err
    return match[1], token


def listed(result: CliResult) -> dict[str, list[str]]:
    """``keys list`` rows by key id: account, role, created (date, time), state."""
    assert result.code == 0, result.output
    header, *lines = result.out.splitlines()
    assert header.split() == ["KEY", "ID", "ACCOUNT", "ROLE", "CREATED", "STATE"]
    return {key_id: cells for key_id, *cells in (line.split() for line in lines)}


async def test_created_keys_authenticate_with_their_role_and_list_without_their_token(
    database_dsn: str, client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    account = f"cli-{uuid.uuid4().hex[:10]}"
    admin_id, admin_token = created_key(
        await herald(database_dsn, "keys", "create", "--account", account, "--role", "admin"),
        account,
        "admin",
    )
    member_id, member_token = created_key(
        await herald(database_dsn, "keys", "create", "--account", account), account, "member"
    )

    # Each key is an identity of its role: an admin sees another account's draft, a member not.
    other = await make_key()
    draft = await create_post(client, other, title="Someone else's draft")
    as_admin = await client.get(
        f"/v1/posts/{draft['id']}", headers={"Authorization": f"Bearer {admin_token}"}
    )
    as_member = await client.get(
        f"/v1/posts/{draft['id']}", headers={"Authorization": f"Bearer {member_token}"}
    )
    assert (as_admin.status_code, as_member.status_code) == (200, 404)

    result = await herald(database_dsn, "keys", "list")
    rows = listed(result)
    assert rows[admin_id][0] == rows[member_id][0] == account
    assert (rows[admin_id][1], rows[admin_id][-1]) == ("admin", "active")
    assert (rows[member_id][1], rows[member_id][-1]) == ("member", "active")
    assert admin_token not in result.out
    assert member_token not in result.out


async def test_a_revoked_key_is_refused_and_listed_as_revoked(
    database_dsn: str, client: httpx.AsyncClient
) -> None:
    account = f"cli-{uuid.uuid4().hex[:10]}"
    key_id, token = created_key(
        await herald(database_dsn, "keys", "create", "--account", account), account, "member"
    )
    kept_id, kept_token = created_key(
        await herald(database_dsn, "keys", "create", "--account", account), account, "member"
    )
    post = {"title": "Signed", "body": "by a key"}
    response = await client.post(
        "/v1/posts", json=post, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text

    revoked = await herald(database_dsn, "keys", "revoke", key_id)
    assert (revoked.code, revoked.out) == (0, f"revoked key {key_id}\n"), revoked.output

    response = await client.post(
        "/v1/posts", json=post, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, response.text
    response = await client.post(
        "/v1/posts", json=post, headers={"Authorization": f"Bearer {kept_token}"}
    )
    assert response.status_code == 201, response.text  # only that key, not its account
    rows = listed(await herald(database_dsn, "keys", "list"))
    assert rows[key_id][-3] == "revoked", rows[key_id]
    assert rows[kept_id][-1] == "active"

    again = await herald(database_dsn, "keys", "revoke", key_id)
    assert again.code == 1
    assert f"no active key {key_id}" in again.err
    unknown = await herald(database_dsn, "keys", "revoke", "no-such-key")
    assert unknown.code == 1


async def test_an_account_name_out_of_bounds_creates_nothing(
    database_dsn: str, db_pool: asyncpg.Pool
) -> None:
    names = ["", "x" * 101]
    for account in names:
        result = await herald(database_dsn, "keys", "create", "--account", account)
        assert result.code == 2, result.output
        assert "account names are 1 to 100 characters" in result.err
        assert result.out == ""
    assert await db_pool.fetchval("SELECT count(*) FROM accounts WHERE name = ANY($1)", names) == 0
