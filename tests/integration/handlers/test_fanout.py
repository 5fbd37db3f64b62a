"""``fan_out`` called directly: one pending delivery per matching, enabled webhook of the
event's account, carrying the envelope as it will be sent; once, however often it runs."""

from __future__ import annotations

import json
import uuid

import asyncpg

from herald_shared.events import PostCreated, WebhookDisabled
from herald_worker.webhooks.fanout import fan_out
from tests.conftest import MakeKey
from tests.integration.handlers.conftest import event, in_transaction
from tests.integration.webhooks.conftest import insert_webhook


async def deliveries(pool: asyncpg.Pool, event_id: uuid.UUID) -> dict[uuid.UUID, str]:
    rows = await pool.fetch(
        "SELECT webhook_id, payload::text AS payload FROM webhook_deliveries "
        "WHERE event_id = $1 AND status = 'pending'",
        event_id,
    )
    return {row["webhook_id"]: row["payload"] for row in rows}


async def test_each_matching_enabled_webhook_of_the_author_gets_one_delivery(
    db_pool: asyncpg.Pool, make_key: MakeKey
) -> None:
    author, stranger = (await make_key()).account_id, (await make_key()).account_id
    url = "https://hooks.example.com/herald"
    wanted = await insert_webhook(db_pool, author, url, event_types=["post.*"])
    exact = await insert_webhook(db_pool, author, url, event_types=["post.created"])
    await insert_webhook(db_pool, author, url, event_types=["post.deleted"])
    disabled = await insert_webhook(db_pool, author, url, event_types=["*"])
    await db_pool.execute("UPDATE webhooks SET enabled = false WHERE id = $1", disabled)
    await insert_webhook(db_pool, stranger, url, event_types=["*"])
    payload = PostCreated(author_id=author, status="published", title="Hi", tags=[])
    created = event(payload, uuid.uuid4(), 1)

    await in_transaction(db_pool, lambda tx: fan_out(created, tx))
    await in_transaction(db_pool, lambda tx: fan_out(created, tx))  # a replay adds nothing

    sent = await deliveries(db_pool, created.id)
    assert set(sent) == {wanted, exact}
    as_sent = json.loads(created.envelope.model_dump_json())
    assert [json.loads(payload) for payload in sent.values()] == [as_sent, as_sent]


async def test_webhook_disabled_goes_to_the_webhooks_account(
    db_pool: asyncpg.Pool, make_key: MakeKey
) -> None:
    account = (await make_key()).account_id
    url = "https://hooks.example.com/herald"
    listener = await insert_webhook(db_pool, account, url, event_types=["webhook.*"])
    await insert_webhook(db_pool, account, url, event_types=["post.*"])
    gone = WebhookDisabled(account_id=account, origin="https://dead.example.com", reason="dead")
    disabled = event(gone, uuid.uuid4(), 1)

    await in_transaction(db_pool, lambda tx: fan_out(disabled, tx))

    assert set(await deliveries(db_pool, disabled.id)) == {listener}
