"""An event retried through a retry queue is handled again in the trace it arrived with."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import asyncpg

from herald_shared.trace_files import read_spans
from tests.integration.events.conftest import post_created, wait_for_effects
from tests.support.broker import Broker
from tests.support.services import Processes
from tests.support.waiting import wait_until


async def test_a_retried_event_is_handled_again_in_the_trace_it_arrived_with(
    db_pool: asyncpg.Pool,
    broker: Broker,
    processes: Processes,
    consumer_name: str,
    tmp_path: Path,
) -> None:
    trace_dir = tmp_path / "traces"
    # The first try fails; with one in-process attempt the event goes through a retry queue.
    await processes.start_consumer(
        consumer_name,
        behaviour="fail-transient:1",
        in_process_attempts=1,
        env={"HERALD_TRACE_DIR": str(trace_dir)},
    )
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    event = post_created()
    await broker.publish([event], headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    await wait_for_effects(db_pool, consumer_name, [event.id])

    handlings: list[dict[str, Any]] = []
    spans: dict[str, dict[str, Any]] = {}

    async def both_handlings_written() -> bool:
        nonlocal handlings, spans
        spans = {s["span_id"]: s for s in read_spans(trace_dir)}
        handlings = sorted(
            (
                s
                for s in spans.values()
                if s["name"] == "handle post.created"
                and s["attributes"].get("herald.event_id") == str(event.id)
            ),
            key=lambda s: int(s["attributes"]["herald.attempt"]),
        )
        return len(handlings) == 2

    await wait_until(
        both_handlings_written, seconds=10, message="both handlings' spans were not written"
    )
    first, retried = handlings
    outcomes = [
        (s["attributes"]["herald.attempt"], s["attributes"]["herald.outcome"]) for s in handlings
    ]
    assert outcomes == [(1, "retried"), (2, "ok")]
    assert first["trace_id"] == retried["trace_id"] == trace_id
    # The retry continues the trace from the failed attempt, not from the original publisher.
    ancestors = []
    current = spans.get(retried["parent_span_id"])
    while current is not None:
        ancestors.append(current["span_id"])
        current = spans.get(current["parent_span_id"])
    assert first["span_id"] in ancestors
