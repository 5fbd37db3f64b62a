"""One dead endpoint must not slow the others: a receiver that never answers times out, its
breaker opens, and a healthy receiver's deliveries keep their latency meanwhile.

Latency is measured per event, one at a time: from just before the API request that commits a
``post.created`` to the moment the healthy receiver has the delivery's body.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from tests.conftest import ApiKey, MakeKey
from tests.integration.webhooks.conftest import StartWorker, deliveries, subscribe
from tests.support.http import create_post
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver, always, hang

SAMPLES = 20
READ_TIMEOUT = 2.0
BREAKER_FAILURES = 2
PER_HOST_CONCURRENCY = 2


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def ms(values: list[float]) -> str:
    p50 = sorted(values)[len(values) // 2]
    return (
        f"p50 {p50 * 1000:.0f} ms, p95 {p95(values) * 1000:.0f} ms, "
        f"max {max(values) * 1000:.0f} ms, n={len(values)}"
    )


async def _latency(client: httpx.AsyncClient, key: ApiKey, receiver: Receiver) -> float:
    """Create one post and wait for its delivery; seconds from the request to the receipt."""
    started = time.monotonic()
    post = await create_post(client, key, title="Latency probe")
    await receiver.wait_for(
        lambda: bool(receiver.find("post.created", post["id"])),
        seconds=10,
        message="the healthy receiver got the post",
    )
    return receiver.find("post.created", post["id"])[0].at - started


async def _timed_out(client: httpx.AsyncClient, key: ApiKey, webhook_id: str) -> int:
    log = await deliveries(client, key, webhook_id)
    return sum(1 for item in log if "timed out" in str(item["last_error"]))


async def test_a_hanging_receiver_does_not_slow_a_healthy_one(
    client: httpx.AsyncClient,
    make_key: MakeKey,
    start_worker: StartWorker,
    receivers: Any,
) -> None:
    await start_worker(
        concurrency=4,
        per_host_concurrency=PER_HOST_CONCURRENCY,
        read_timeout_seconds=READ_TIMEOUT,
        breaker_failures=BREAKER_FAILURES,
        breaker_reset_seconds=60,
    )
    healthy_key, hanging_key = await make_key(), await make_key()
    healthy = await receivers(always(200))
    hanging = await receivers(hang())
    await subscribe(client, healthy_key, healthy, ["post.created"])
    stuck = await subscribe(client, hanging_key, hanging, ["post.*"])
    for _ in range(5):  # warm the pipeline's connections up
        await _latency(client, healthy_key, healthy)

    alone = [await _latency(client, healthy_key, healthy) for _ in range(SAMPLES)]

    for n in range(10):
        await create_post(client, hanging_key, title=f"Into the void {n}")
    await hanging.wait_for(lambda: len(hanging.requests) >= 1, message="a call hangs")
    # While calls hang, until the breaker opens...
    while_hanging: list[float] = []
    while await _timed_out(client, hanging_key, stuck["id"]) < BREAKER_FAILURES:
        while_hanging.append(await _latency(client, healthy_key, healthy))
        assert len(while_hanging) < 200, "the hanging calls never timed out"
    # ...and once it is open.
    while_open = [await _latency(client, healthy_key, healthy) for _ in range(SAMPLES)]
    beside = while_hanging + while_open

    print(f"\nhealthy receiver alone:            {ms(alone)}")
    print(f"beside one hanging (calls pending): {ms(while_hanging)}")
    print(f"beside one hanging (breaker open):  {ms(while_open)}")
    assert len(while_hanging) >= 5, "too few samples while the calls hung"
    # No healthy delivery waited behind a hanging call (which takes READ_TIMEOUT to give up).
    assert max(beside) < READ_TIMEOUT / 2
    assert p95(beside) <= 2 * p95(alone) + 0.25

    # Every call made is in the delivery log once it has timed out.
    async def all_recorded() -> bool:
        log = await deliveries(client, hanging_key, stuck["id"])
        recorded: int = sum(item["attempts"] for item in log)
        return bool(recorded == hanging.accepted)

    await wait_until(all_recorded, seconds=3 * READ_TIMEOUT, message="calls not in the log")
    log = await deliveries(client, hanging_key, stuck["id"])
    attempted = [item for item in log if item["attempts"]]
    assert all("timed out" in str(item["last_error"]) for item in attempted)
    # Never more than per_host_concurrency calls at once. The breaker opened at the second
    # timeout: a call may have started when the first one freed its slot, none after; the rest
    # wait unattempted for the breaker to probe.
    assert hanging.most_open <= PER_HOST_CONCURRENCY
    assert BREAKER_FAILURES <= hanging.accepted <= BREAKER_FAILURES + PER_HOST_CONCURRENCY - 1
    waiting = [item for item in log if item["attempts"] == 0]
    assert waiting
    assert all(item["status"] == "pending" for item in waiting)
    assert all(item["next_attempt_at"] is not None for item in waiting)
