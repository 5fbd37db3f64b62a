"""The worker's handler table: which handler runs for which event. Every handler uses the inbox,
so all of one event's handlers run in one transaction, in the order registered here."""

from __future__ import annotations

from herald_shared.events import PostCreated, PostDeleted, PostUpdated
from herald_shared.messaging.handlers import HandlerTable
from herald_worker.enrichment import enrich_post
from herald_worker.stats import count_post
from herald_worker.webhooks.fanout import FANOUT_MODELS, fan_out


def handler_table() -> HandlerTable:
    table = HandlerTable()
    table.inbox(PostCreated, enrich_post)
    table.inbox(PostUpdated, enrich_post)
    table.inbox(PostCreated, count_post)
    table.inbox(PostUpdated, count_post)
    table.inbox(PostDeleted, count_post)
    for model in FANOUT_MODELS:
        table.inbox(model, fan_out)
    return table
