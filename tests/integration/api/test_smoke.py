from __future__ import annotations

from tests.conftest import MakeKey


async def test_create_and_read_post(client, make_key: MakeKey) -> None:
    key = await make_key()
    created = await client.post(
        "/v1/posts", json={"title": "Hi", "body": "there"}, headers=key.headers
    )
    assert created.status_code == 201, created.text
    got = await client.get(created.headers["Location"], headers=key.headers)
    assert got.status_code == 200
    assert got.json()["title"] == "Hi"
    assert got.headers["ETag"] == '"1"'
