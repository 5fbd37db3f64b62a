"""The Dramatiq side of the worker comparison: the same trivial task on the same RabbitMQ.

Built as Dramatiq's documentation shows: a ``RabbitmqBroker`` set as the global broker and an
``@dramatiq.actor``, run by ``dramatiq bench.dramatiq_app --processes 1 --threads 16`` (the
harness gives it Herald's consumer concurrency, 16, and prefetch, 32, through
``dramatiq_queue_prefetch``). Default middleware (age and time limits, retries, callbacks,
pipelines); messages are acknowledged after the task ran, as Dramatiq always does. Dramatiq
declares its own queues (a classic durable queue with its delay and dead-letter queues): it has
no option for quorum queues, and a pre-declared quorum queue would fail its declaration.

The task is timed exactly as ``bench.consumer_app``'s: one Redis ``INCR``, and the first and the
``BENCH_EXPECTED``-th message store their time. ``python -m bench.dramatiq_app fill N``
publishes ``N`` messages first.
"""

from __future__ import annotations

import os
import sys
import time

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = os.environ.get("BENCH_PEER_QUEUE", "bench-dramatiq")

broker = RabbitmqBroker(url=os.environ.get("BENCH_PEER_AMQP_URL", "amqp://guest:guest@127.0.0.1/"))
dramatiq.set_broker(broker)

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1/0"))
    return _client


@dramatiq.actor(queue_name=QUEUE, max_retries=3)
def noop(event_id: str) -> None:
    """Nothing but the timing: the trivial task every runtime runs."""
    key = os.environ["BENCH_COUNTER_KEY"]
    client = _redis()
    seen = client.incr(f"{key}:count")
    if seen == 1:
        client.set(f"{key}:first", time.time())
    if seen == int(os.environ["BENCH_EXPECTED"]):
        client.set(f"{key}:last", time.time())


if __name__ == "__main__":
    # ``python -m bench.dramatiq_app fill N``: publish N messages to the actor's queue.
    broker.declare_queue(QUEUE)
    for i in range(int(sys.argv[2])):
        noop.send(f"event-{i}")
    broker.close()
