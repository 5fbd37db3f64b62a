"""Every Prometheus metric Herald exports, defined once.

Labels are bounded: route templates (never raw paths), event types, queue names, outcomes,
the names of Herald's own breakers. Webhook destinations are customers' endpoints, unbounded in
number: their breakers are counted, never labelled. In the API's multi-process mode
(``PROMETHEUS_MULTIPROC_DIR``) each process writes its own files and ``/metrics`` aggregates
them; gauges say how (``multiprocess_mode``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    "herald_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "herald_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
CACHE_LOOKUPS = Counter("herald_cache_lookups_total", "Post cache lookups.", ["result"])
REPLICA_ROUTING = Counter(
    "herald_db_replica_routing_total",
    "With a read replica: reads by the server that answered and why (decision 0036).",
    ["server", "reason"],
)
RATE_LIMIT_DECISIONS = Counter(
    "herald_rate_limit_decisions_total", "Rate-limit decisions.", ["bucket", "decision"]
)
OUTBOX_BACKLOG = Gauge("herald_outbox_backlog", "Unpublished outbox rows.", multiprocess_mode="max")
OUTBOX_OLDEST_SECONDS = Gauge(
    "herald_outbox_oldest_unpublished_seconds",
    "Age of the oldest unpublished outbox row.",
    multiprocess_mode="max",
)
PUBLISHED = Counter("herald_events_published_total", "Events the relay published.", ["outcome"])
PUBLISH_CONFIRM_SECONDS = Histogram(
    "herald_publish_confirm_seconds",
    "Time from publish to the broker's confirm, per relay batch.",
    buckets=_LATENCY_BUCKETS,
)
CONSUMED = Counter(
    "herald_messages_consumed_total",
    "Messages consumed, by queue and outcome (ok, retried, deferred, dead_lettered).",
    ["queue", "outcome"],
)
UNHANDLED_MESSAGES = Counter(
    "herald_messages_unhandled_total",
    "Messages a consumer had no handler for (dead-lettered), by queue and event type.",
    ["queue", "event_type"],
)
HANDLER_SECONDS = Histogram(
    "herald_handler_duration_seconds",
    "Time to run an event's handlers.",
    ["consumer", "event_type"],
    buckets=_LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "herald_queue_depth",
    "Messages ready in a queue.",
    ["queue"],
    multiprocess_mode="max",
)
BREAKER_OPEN = Gauge(
    "herald_breaker_open",
    "1 while the circuit breaker of one of Herald's own dependencies is open or half-open.",
    ["breaker"],
    multiprocess_mode="max",
)
WEBHOOK_DESTINATIONS_OPEN = Gauge(
    "herald_webhook_destinations_open",
    "Webhook destinations (customer endpoints) whose circuit breaker is open or half-open.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "herald_db_pool_connections", "Connections in the pool.", ["pool"], multiprocess_mode="livesum"
)
DB_POOL_IN_USE = Gauge(
    "herald_db_pool_in_use", "Pool connections checked out.", ["pool"], multiprocess_mode="livesum"
)
INVALIDATION_LAG_SECONDS = Histogram(
    "herald_cache_invalidation_lag_seconds",
    "From the event's commit to its cache invalidation.",
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "herald_webhook_deliveries_total", "Webhook delivery attempts.", ["outcome"]
)
