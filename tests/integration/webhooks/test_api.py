"""The webhooks API: owner-only access, the secret shown once, rotation, updates, validation,
pagination, limits and the delivery log's shape. No worker runs here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from herald_api.settings import Settings
from herald_shared.apikeys import Role
from herald_shared.webhooks.settings import WebhookSettings
from tests.conftest import ApiKey, MakeKey
from tests.integration.webhooks.conftest import api_client, deliveries
from tests.support.http import assert_problem

URL = "http://127.0.0.1:9/hook"


async def _create(client: httpx.AsyncClient, key: ApiKey, **fields: Any) -> dict[str, Any]:
    payload = {"url": URL, "event_types": ["post.*"]} | fields
    response = await client.post("/v1/webhooks", json=payload, headers=key.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_the_secret_is_shown_once_and_never_again(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    response = await client.post(
        "/v1/webhooks",
        json={"url": URL, "event_types": ["post.created", "webhook.*"], "description": "Mine"},
        headers=key.headers,
    )
    assert response.status_code == 201
    created = response.json()
    assert response.headers["location"] == f"/v1/webhooks/{created['id']}"
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) == 50
    assert created["enabled"] is True
    assert created["event_types"] == ["post.created", "webhook.*"]
    assert created["description"] == "Mine"

    one = await client.get(f"/v1/webhooks/{created['id']}", headers=key.headers)
    listed = await client.get("/v1/webhooks", headers=key.headers)
    patched = await client.patch(
        f"/v1/webhooks/{created['id']}", json={"description": "Renamed"}, headers=key.headers
    )
    for response in (one, patched, listed):
        assert response.status_code == 200
        assert "secret" not in response.text
        assert "whsec_" not in response.text
    assert patched.json()["description"] == "Renamed"
    assert {k: v for k, v in one.json().items()} == {
        k: v for k, v in created.items() if k != "secret"
    }


async def test_rotating_returns_a_new_secret_once(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    created = await _create(client, key)
    rotated = await client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=key.headers)
    assert rotated.status_code == 200
    secret = rotated.json()["secret"]
    assert rotated.json()["id"] == created["id"]
    assert secret.startswith("whsec_")
    assert secret != created["secret"]
    stored = await db_pool.fetchrow(
        "SELECT secret, previous_secret, previous_secret_expires_at FROM webhooks WHERE id = $1",
        uuid.UUID(created["id"]),
    )
    assert stored is not None
    assert stored["secret"] == secret
    # The replaced secret is kept for the overlap, and the response says until when.
    assert stored["previous_secret"] == created["secret"]
    assert stored["previous_secret_expires_at"].isoformat() == (
        rotated.json()["previous_secret_expires_at"].replace("Z", "+00:00")
    )


async def test_only_the_owning_account_sees_or_touches_a_webhook(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    owner, other = await make_key(), await make_key()
    admin = await make_key(Role.ADMIN)
    created = await _create(client, owner)
    path = f"/v1/webhooks/{created['id']}"
    for intruder in (other, admin):
        attempts = [
            await client.get(path, headers=intruder.headers),
            await client.patch(path, json={"enabled": False}, headers=intruder.headers),
            await client.delete(path, headers=intruder.headers),
            await client.post(f"{path}/rotate-secret", headers=intruder.headers),
            await client.get(f"{path}/deliveries", headers=intruder.headers),
        ]
        for response in attempts:
            assert_problem(response, 404)
        assert (await client.get("/v1/webhooks", headers=intruder.headers)).json()["items"] == []
    # Untouched by all that.
    still = await client.get(path, headers=owner.headers)
    assert still.status_code == 200
    assert still.json()["enabled"] is True
    anonymous = await client.get("/v1/webhooks")
    assert_problem(anonymous, 401)


async def test_delete_removes_the_webhook(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    created = await _create(client, key)
    deleted = await client.delete(f"/v1/webhooks/{created['id']}", headers=key.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(await client.get(f"/v1/webhooks/{created['id']}", headers=key.headers), 404)
    assert_problem(await client.delete(f"/v1/webhooks/{created['id']}", headers=key.headers), 404)


async def test_re_enabling_clears_the_failure_record_and_disabling_cancels_what_is_pending(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    created = await _create(client, key)
    webhook_id = uuid.UUID(created["id"])
    await db_pool.execute(
        "UPDATE webhooks SET enabled = false, disabled_reason = 'failing', "
        "consecutive_failures = 5, failing_since = now() - interval '6 days' WHERE id = $1",
        webhook_id,
    )
    disabled = (await client.get(f"/v1/webhooks/{webhook_id}", headers=key.headers)).json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "failing")
    assert disabled["consecutive_failures"] == 5
    assert disabled["failing_since"] is not None

    enabled = await client.patch(
        f"/v1/webhooks/{webhook_id}", json={"enabled": True}, headers=key.headers
    )
    body = enabled.json()
    assert (body["enabled"], body["disabled_reason"]) == (True, None)
    assert (body["consecutive_failures"], body["failing_since"]) == (0, None)

    await db_pool.execute(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload, "
        "next_attempt_at) VALUES ($1, $2, $3, 'post.created', '{}', now() + interval '1 hour')",
        uuid.uuid4(),
        webhook_id,
        uuid.uuid4(),
    )
    off = await client.patch(
        f"/v1/webhooks/{webhook_id}", json={"enabled": False}, headers=key.headers
    )
    assert (off.json()["enabled"], off.json()["disabled_reason"]) == (False, None)
    log = await deliveries(client, key, str(webhook_id))
    assert [(item["status"], item["next_attempt_at"]) for item in log] == [("cancelled", None)]


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"event_types": ["post.*"]}, "url"),
        ({"url": URL}, "event_types"),
        ({"url": URL, "event_types": []}, "event_types"),
        ({"url": URL, "event_types": ["psot.created"]}, "event_types"),
        ({"url": URL, "event_types": ["post.**"]}, "event_types"),
        ({"url": URL, "event_types": ["post.*", "post.*"]}, "event_types"),
        ({"url": URL, "event_types": ["*"], "description": "x" * 501}, "description"),
        ({"url": URL, "event_types": ["*"], "secret": "whsec_mine"}, "secret"),
        ({"url": "", "event_types": ["*"]}, "url"),
        ({"url": "http://" + "a" * 2100 + ".com/", "event_types": ["*"]}, "url"),
        ({"url": 42, "event_types": ["*"]}, "url"),
    ],
)
async def test_invalid_bodies_are_refused_with_field_errors(
    client: httpx.AsyncClient, make_key: MakeKey, payload: dict[str, Any], where: str
) -> None:
    key = await make_key()
    body = assert_problem(await client.post("/v1/webhooks", json=payload, headers=key.headers), 422)
    assert any(where in error["loc"] for error in body["errors"]), body


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "must start with"),
        ("https://user:pass@example.com/hook", "credentials"),
        ("https://example.com/hook#frag", "fragment"),
        ("https://exa mple.com/hook", "spaces"),
        ("https://example.com:0/hook", "port"),
        ("https://example.com:99999/hook", "port"),
        ("https:///hook", "no host"),
        ("https://bad_host!.com/", "not a valid host name"),
    ],
)
async def test_urls_that_may_never_be_called_are_refused(
    client: httpx.AsyncClient, make_key: MakeKey, url: str, why: str
) -> None:
    key = await make_key()
    response = await client.post(
        "/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=key.headers
    )
    body = assert_problem(response, 422)
    assert body["type"] == "/problems/webhook-url-refused"
    assert why in body["detail"], body["detail"]


async def test_plain_http_is_refused_unless_allowed(settings: Settings, make_key: MakeKey) -> None:
    key = await make_key()
    production_like = WebhookSettings(allow_http=False, allow_private=False)
    async with api_client(settings, production_like) as strict:
        refused = await strict.post(
            "/v1/webhooks",
            json={"url": "http://93.184.216.34/hook", "event_types": ["*"]},
            headers=key.headers,
        )
        assert "https://" in assert_problem(refused, 422)["detail"]
        created = await strict.post(
            "/v1/webhooks",
            json={"url": "https://93.184.216.34/hook", "event_types": ["*"]},
            headers=key.headers,
        )
        assert created.status_code == 201
        patched = await strict.patch(
            f"/v1/webhooks/{created.json()['id']}",
            json={"url": "https://10.1.2.3/hook"},
            headers=key.headers,
        )
        assert "private address" in assert_problem(patched, 422)["detail"]


async def test_malformed_requests(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    created = await _create(client, key)
    path = f"/v1/webhooks/{created['id']}"
    assert_problem(
        await client.post(
            "/v1/webhooks",
            content=b"{not json",
            headers={**key.headers, "Content-Type": "application/json"},
        ),
        400,
    )
    assert_problem(await client.patch(path, json={}, headers=key.headers), 422)
    assert_problem(await client.patch(path, json={"enabled": None}, headers=key.headers), 422)
    assert_problem(await client.patch(path, json={"enabled": "yes"}, headers=key.headers), 422)
    assert_problem(await client.get("/v1/webhooks/not-a-uuid", headers=key.headers), 422)
    assert_problem(await client.get("/v1/webhooks?limit=0", headers=key.headers), 422)
    assert_problem(await client.get("/v1/webhooks?cursor=abc.def", headers=key.headers), 400)
    assert_problem(await client.get(f"{path}/deliveries?status=lost", headers=key.headers), 422)


async def test_an_account_has_at_most_the_configured_number_of_webhooks(
    settings: Settings, make_key: MakeKey
) -> None:
    key = await make_key()
    limited = WebhookSettings(allow_http=True, allow_private=True, max_per_account=2)
    async with api_client(settings, limited) as client:
        await _create(client, key)
        await _create(client, key)
        third = await client.post(
            "/v1/webhooks", json={"url": URL, "event_types": ["*"]}, headers=key.headers
        )
        assert assert_problem(third, 409)["type"] == "/problems/webhook-limit-reached"


async def test_an_idempotent_create_replays_the_same_webhook(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    key = await make_key()
    headers = {**key.headers, "Idempotency-Key": f"hook-{uuid.uuid4()}"}
    payload = {"url": URL, "event_types": ["post.*"]}
    first = await client.post("/v1/webhooks", json=payload, headers=headers)
    again = await client.post("/v1/webhooks", json=payload, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    # The same webhook, but the secret is shown once only: never stored for replays.
    assert first.json()["secret"].startswith("whsec_")
    assert "secret" not in again.json()
    assert again.json() == {k: v for k, v in first.json().items() if k != "secret"}
    listed = await client.get("/v1/webhooks", headers=key.headers)
    assert len(listed.json()["items"]) == 1


async def test_the_list_pages_newest_first(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    key = await make_key()
    made = [(await _create(client, key, description=f"hook {n}"))["id"] for n in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/webhooks", params=params, headers=key.headers)).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(made))


async def test_the_delivery_log_pages_newest_first_and_filters_by_status(
    client: httpx.AsyncClient, make_key: MakeKey, db_pool: asyncpg.Pool
) -> None:
    key = await make_key()
    webhook_id = uuid.UUID((await _create(client, key))["id"])
    start = datetime.now(UTC) - timedelta(minutes=10)
    rows = [
        (uuid.uuid4(), uuid.uuid4(), status, start + timedelta(seconds=n))
        for n, status in enumerate(["succeeded", "dead", "succeeded", "pending", "succeeded"])
    ]
    await db_pool.executemany(
        """
        INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, payload, status,
            attempts, last_status_code, last_error, last_latency_ms, created_at, next_attempt_at)
        VALUES ($1, $5, $2, 'post.created', '{}', $3, 1, 500, 'HTTP 500', 12, $4,
            now() + interval '1 hour')
        """,
        [(*row, webhook_id) for row in rows],
    )
    log = await deliveries(client, key, str(webhook_id))
    assert [item["id"] for item in log] == [str(row[0]) for row in reversed(rows)]
    pending = log[1]
    assert pending["status"] == "pending"
    assert pending["next_attempt_at"] is not None
    assert set(pending) == {
        "id", "event_id", "event_type", "status", "attempts", "last_status_code", "last_error",
        "last_latency_ms", "next_attempt_at", "created_at", "updated_at",
    }  # fmt: skip
    assert all(item["next_attempt_at"] is None for item in log if item["status"] != "pending")

    page = (
        await client.get(
            f"/v1/webhooks/{webhook_id}/deliveries",
            params={"limit": 2, "status": "succeeded"},
            headers=key.headers,
        )
    ).json()
    assert [item["id"] for item in page["items"]] == [str(rows[4][0]), str(rows[2][0])]
    rest = (
        await client.get(
            f"/v1/webhooks/{webhook_id}/deliveries",
            params={"limit": 2, "status": "succeeded", "cursor": page["next_cursor"]},
            headers=key.headers,
        )
    ).json()
    assert [item["id"] for item in rest["items"]] == [str(rows[0][0])]
    assert rest["next_cursor"] is None
    # A cursor is bound to its filter.
    other = await client.get(
        f"/v1/webhooks/{webhook_id}/deliveries",
        params={"status": "dead", "cursor": page["next_cursor"]},
        headers=key.headers,
    )
    assert_problem(other, 400)


async def test_the_openapi_document_describes_webhooks_with_problem_responses(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert set(paths["/v1/webhooks"]) == {"get", "post"}
    assert set(paths["/v1/webhooks/{webhook_id}"]) == {"get", "patch", "delete"}
    assert "post" in paths["/v1/webhooks/{webhook_id}/rotate-secret"]
    assert "get" in paths["/v1/webhooks/{webhook_id}/deliveries"]
    create = paths["/v1/webhooks"]["post"]["responses"]
    assert "application/problem+json" in create["422"]["content"]
    assert "application/problem+json" in create["409"]["content"]
