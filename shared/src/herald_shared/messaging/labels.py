"""The consumer's labelled metrics, each label set looked up once per process: ``labels`` takes
a lock and builds a key on every call, which is per-message work the consumer need not do."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from herald_shared.metrics import CONSUMED, HANDLER_SECONDS


class ConsumerMetrics:
    """``herald_handler_duration_seconds`` and ``herald_messages_consumed_total`` of one
    consumer."""

    def __init__(self, consumer: str, queue: str) -> None:
        self._consumer = consumer
        self._queue = queue
        self._seconds: dict[str, Histogram] = {}
        self._consumed: dict[str, Counter] = {}

    def handler_seconds(self, event_type: str) -> Histogram:
        child = self._seconds.get(event_type)
        if child is None:
            child = self._seconds[event_type] = HANDLER_SECONDS.labels(self._consumer, event_type)
        return child

    def consumed(self, outcome: str) -> Counter:
        child = self._consumed.get(outcome)
        if child is None:
            child = self._consumed[outcome] = CONSUMED.labels(self._queue, outcome)
        return child
