"""The worker's handler table: event type → task. Each task is a plain async function."""

from __future__ import annotations

from herald_shared.messaging.handlers import HandlerSpec
from herald_worker.deps import Deps


def handler_table(deps: Deps) -> list[HandlerSpec]:
    """The handlers this worker runs, bound to their dependencies."""
    del deps  # the post tasks (enrichment, webhooks, stats) register here
    return []
