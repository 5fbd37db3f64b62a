"""Typed settings for each backing service, read from ``HERALD_*`` environment variables.

Each class owns one prefix. Services compose the classes they need into their own settings
object, constructed once in ``main`` and passed down; nothing here is read at import time.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from herald_shared.secret_strength import MIN_SECRET_BYTES, secret_weakness

DEV_CURSOR_SECRET = "dev-only-cursor-secret-change-me"  # noqa: S105 - refused in production


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class DatabaseSettings(BaseSettings):
    """PostgreSQL: the primary, an optional read replica and the pool's limits."""

    model_config = SettingsConfigDict(env_prefix="HERALD_DB_", extra="ignore")

    dsn: str = "postgresql://herald:herald@127.0.0.1:5432/herald"
    replica_dsn: str | None = Field(
        default=None, description="Read-only replica used for reads; the primary when unset."
    )
    pool_min_size: int = Field(default=2, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    acquire_timeout_seconds: float = Field(default=2.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    command_timeout_seconds: float = Field(default=10.0, gt=0)
    statement_timeout_ms: int = Field(default=5000, ge=0)
    lock_timeout_ms: int = Field(
        default=1000,
        ge=0,
        description=(
            "Longest a statement waits for a row or advisory lock (0: no limit but the "
            "statement timeout); a wait past it fails the statement, which the API answers 503."
        ),
    )
    idle_in_transaction_timeout_ms: int = Field(default=10000, ge=0)
    max_inactive_connection_lifetime_seconds: float = Field(default=300.0, ge=0)
    replica_fence_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "With a replica: how long an account's reads wait for the replica to replay its last "
            "write before reading it (they read the primary meanwhile); keep it above the "
            "replica lag you tolerate."
        ),
    )
    pgbouncer: bool = Field(
        default=False,
        description=(
            "Behind PgBouncer in transaction mode: no prepared-statement cache and no "
            "per-connection server settings (set statement_timeout and lock_timeout on the "
            "role instead)."
        ),
    )

    @model_validator(mode="after")
    def _check_pool(self) -> Self:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("HERALD_DB_POOL_MIN_SIZE must not exceed HERALD_DB_POOL_MAX_SIZE")
        return self


class SecuritySettings(BaseSettings):
    """Secrets and environment; in production a secret must be 32 random bytes, hex or base64."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    env: Environment = Environment.DEVELOPMENT
    cursor_secret: SecretStr = SecretStr(DEV_CURSOR_SECRET)

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Self:
        if self.env is Environment.PRODUCTION:
            weakness = secret_weakness(self.cursor_secret.get_secret_value())
            if weakness is not None:
                raise ValueError(
                    f"HERALD_CURSOR_SECRET must be at least {MIN_SECRET_BYTES} random bytes, "
                    f"hex or base64 (openssl rand -base64 {MIN_SECRET_BYTES}), in production: "
                    f"{weakness}"
                )
        return self


class LogSettings(BaseSettings):
    """Log level and format for every service."""

    model_config = SettingsConfigDict(env_prefix="HERALD_LOG_", extra="ignore")

    level: str = "INFO"
    json_format: bool = Field(default=True, alias="HERALD_LOG_JSON")


class AmqpSettings(BaseSettings):
    """RabbitMQ: where it is, the namespace every exchange and queue name starts with, limits."""

    model_config = SettingsConfigDict(env_prefix="HERALD_AMQP_", extra="ignore")

    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    namespace: str = Field(
        default="herald",
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$",
        description="Prefix of every exchange and queue: deployments and test runs never collide.",
    )
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    reconnect_interval_seconds: float = Field(default=1.0, gt=0)
    quorum_queues: bool = True
    at_least_once_dead_lettering: bool = Field(
        default=True,
        description=(
            "Quorum queues: the broker keeps what it dead-letters until the target confirmed it. "
            "False only where a broker's dead-letter workers are known to be fragile (0029)."
        ),
    )


class RelaySettings(BaseSettings):
    """The outbox relay that runs inside every process that writes events."""

    model_config = SettingsConfigDict(env_prefix="HERALD_RELAY_", extra="ignore")

    enabled: bool = True
    batch_size: int = Field(default=200, ge=1, le=5000)
    sweep_interval_seconds: float = Field(
        default=0.5, gt=0, description="How often to look for rows no wake-up announced."
    )
    coalesce_seconds: float = Field(
        default=0.001,
        ge=0,
        le=0.05,
        description=(
            "After a wake-up, how long to let more commits arrive so they share one claim and "
            "publish batch (0: none). It is the most a single event waits for company."
        ),
    )
    reconnect_initial_seconds: float = Field(
        default=0.5, gt=0, description="First wait before connecting to the broker again."
    )
    reconnect_max_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait between connection attempts (doubling, jittered, up to this).",
    )
    breaker_failures: int = Field(default=3, ge=1)
    breaker_reset_seconds: float = Field(default=5.0, gt=0)


class ConsumerSettings(BaseSettings):
    """The consumer runtime shared by the worker and the cache-invalidator."""

    model_config = SettingsConfigDict(env_prefix="HERALD_CONSUMER_", extra="ignore")

    concurrency: int = Field(
        default=16, ge=1, le=1000, description="Handlers in flight per process."
    )
    prefetch: int = Field(default=32, ge=1, le=10000, description="Unacked messages per process.")
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    handler_timeout_seconds: float = Field(default=30.0, gt=0)
    inbox_batch_max: int = Field(
        default=8,
        ge=1,
        le=100,
        description=(
            "Inbox deliveries in flight together that share one transaction, each in a "
            "savepoint (1: one transaction per event)."
        ),
    )
    inbox_batch_window_seconds: float = Field(
        default=0.01,
        gt=0,
        le=10,
        description=(
            "Longest an inbox batch runs its events one after another before handing the rest "
            "to other connections; handlers slower than this on average run unbatched."
        ),
    )
    in_process_attempts: int = Field(
        default=3, ge=1, le=10, description="Tries of a transient failure before the retry queues."
    )
    retry_delays_seconds: list[float] = Field(
        default=[1.0, 5.0, 30.0, 120.0, 600.0],
        min_length=1,
        description=(
            "Backoff of the retry queues, one queue per step; "
            "the message dead-letters after the last."
        ),
    )
    delivery_limit: int = Field(
        default=5,
        ge=1,
        le=1000,
        description=(
            "Quorum queues: deliveries of one message (handed back by a crash or a stop) before "
            "the broker dead-letters it. Fixed when the queue is first declared."
        ),
    )
    pause_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Pause of intake after a handler finds a dependency down (first probe after).",
    )
    max_pause_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest pause between probes while a dependency stays down (backoff cap).",
    )
    max_hold_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Longest a delivered message waits at paused intake before it is put back unrun "
            "(no attempt spent); keep it well below the broker's consumer timeout (30 min)."
        ),
    )
    health_host: str = "127.0.0.1"
    health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="/livez, /readyz and /metrics; the service's own default port when unset.",
    )


class RedisSettings(BaseSettings):
    """Redis: the cache and the rate limiter. A cache fails fast: timeouts are tens of ms."""

    model_config = SettingsConfigDict(env_prefix="HERALD_REDIS_", extra="ignore")

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    cluster: bool = Field(
        default=False,
        description=(
            "The URL names one node of a Redis Cluster; the others are discovered from it "
            "(the database number must be 0)."
        ),
    )
    key_prefix: str = Field(default="herald:", pattern=r"^[A-Za-z0-9:_.-]{0,64}$")
    max_connections: int = Field(default=64, ge=1)
    pool_timeout_seconds: float = Field(default=0.1, gt=0)
    socket_timeout_seconds: float = Field(default=0.1, gt=0)
    connect_timeout_seconds: float = Field(default=0.1, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=5.0, gt=0)


class CacheSettings(BaseSettings):
    """The read cache in front of PostgreSQL."""

    model_config = SettingsConfigDict(env_prefix="HERALD_CACHE_", extra="ignore")

    enabled: bool = True
    post_ttl_seconds: int = Field(default=300, ge=1)
    list_ttl_seconds: int = Field(default=30, ge=1)
    #: How long an invalidation is remembered, refusing older fills; outlives any read in flight.
    tombstone_ttl_seconds: int = Field(default=600, ge=1)
    invalidate_on_write: bool = Field(
        default=True,
        description=(
            "The API also invalidates right after its own commits (read-your-writes for the "
            "writer); the cache-invalidator's event-driven invalidation is the guarantee."
        ),
    )


class RateLimitSettings(BaseSettings):
    """Sliding-window limits per API key (read and write budgets) and per IP when anonymous."""

    model_config = SettingsConfigDict(env_prefix="HERALD_RATE_LIMIT_", extra="ignore")

    enabled: bool = True
    window_seconds: int = Field(default=60, ge=1)
    read_per_window: int = Field(default=1200, ge=1)
    write_per_window: int = Field(default=120, ge=1)
    anonymous_per_window: int = Field(default=60, ge=1)
    fail_closed: bool = Field(
        default=False,
        description="Refuse requests (503) instead of allowing them when Redis is down.",
    )


class TelemetrySettings(BaseSettings):
    """Tracing: sampling, and where spans go (OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set,
    otherwise one JSON-lines file per process under ``dir``, read by ``herald trace``)."""

    model_config = SettingsConfigDict(env_prefix="HERALD_TRACE_", extra="ignore")

    enabled: bool = True
    sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Head sampling of new traces; children follow parents."
    )
    dir: str = Field(default="var/traces", description="Where local span files are written.")
