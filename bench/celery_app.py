"""The Celery side of the worker comparison: one trivial task on the same RabbitMQ.

Configured as the fair counterpart of Herald's consumer: late acks (ack after the task ran),
the same prefetch per process (``BENCH_PREFETCH`` divided over the pool's processes), no result
backend, no events, gossip, mingle or remote control; a quorum queue of the run's namespace,
like Herald's. The task is timed exactly as ``bench.consumer_app``'s ``count`` handler: one
Redis ``INCR``, and the first and the ``BENCH_EXPECTED``-th store their time.

Run by the harness as ``celery -A bench.celery_app worker -P solo`` (or ``-P prefork -c 2``).
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery
from kombu.entity import Exchange, Queue

TASK = "bench.noop"


def create_app(queue: str, broker: str) -> Celery:
    """The app for ``queue``: the worker's (from the environment, below) or the harness's."""
    app = Celery("bench", broker=broker)
    app.conf.update(
        task_acks_late=True,
        task_ignore_result=True,
        result_backend=None,
        worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH_MULTIPLIER", "32")),
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_default_queue=queue,
        task_queues=[
            Queue(  # type: ignore[no-untyped-call]
                queue,
                Exchange(queue, type="direct", durable=True),  # type: ignore[no-untyped-call]
                routing_key=queue,
                queue_arguments={"x-queue-type": "quorum"},
            )
        ],
        task_default_exchange=queue,
        task_default_routing_key=queue,
    )
    return app


app = create_app(
    os.environ.get("BENCH_CELERY_QUEUE", "bench.celery"),
    os.environ.get("HERALD_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
)

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1/0"))
    return _client


@app.task(name=TASK)  # type: ignore[untyped-decorator]
def noop(event_id: str) -> None:
    """Nothing but the timing: the trivial task both runtimes run."""
    key = os.environ["BENCH_COUNTER_KEY"]
    client = _redis()
    seen = client.incr(f"{key}:count")
    if seen == 1:
        client.set(f"{key}:first", time.time())
    if seen == int(os.environ["BENCH_EXPECTED"]):
        client.set(f"{key}:last", time.time())
