"""The worker's handler table: which handler runs for which event. All of one event's handlers
run in one transaction, in the order registered here.

None of them needs the inbox record: each is idempotent by construction, so a redelivered event
runs them again and changes nothing, and the consumer saves the inbox's insert (and its later
clean-up) on every event:

- enrichment is version-checked: it applies only while the event's version is the post's
  current one and not enriched yet, under the post's row lock, so a second delivery finds the
  version enriched and neither rewrites the row nor emits a second ``post.enriched``;
- stats replace the post's whole contribution to its account's counters, re-read from the post
  under a per-post lock: a second delivery subtracts and adds the same contribution;
- fan-out inserts one delivery per (webhook, event), a unique key: a second delivery inserts
  nothing (a webhook created between the two deliveries would get the event, as it would had
  the first delivery come that late).
"""

from __future__ import annotations

from herald_shared.events import PostCreated, PostDeleted, PostUpdated
from herald_shared.messaging.handlers import HandlerTable
from herald_worker.enrichment import enrich_post
from herald_worker.stats import count_post
from herald_worker.webhooks.fanout import FANOUT_MODELS, fan_out


def handler_table() -> HandlerTable:
    table = HandlerTable()
    table.idempotent_tx(PostCreated, enrich_post)
    table.idempotent_tx(PostUpdated, enrich_post)
    table.idempotent_tx(PostCreated, count_post)
    table.idempotent_tx(PostUpdated, count_post)
    table.idempotent_tx(PostDeleted, count_post)
    for model in FANOUT_MODELS:
        table.idempotent_tx(model, fan_out)
    return table
