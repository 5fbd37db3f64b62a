"""The API's settings: its own ``HERALD_API_*`` options composed with the shared ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field, IPvAnyNetwork, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from herald_shared.settings import (
    AmqpSettings,
    CacheSettings,
    DatabaseSettings,
    LogSettings,
    RateLimitSettings,
    RedisSettings,
    RelaySettings,
    SecuritySettings,
    TelemetrySettings,
)
from herald_shared.webhooks.settings import WebhookSettings


class ServerSettings(BaseSettings):
    """How the API serves HTTP."""

    model_config = SettingsConfigDict(env_prefix="HERALD_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    processes: int = Field(default=1, ge=1, description="Server worker processes.")
    metrics_host: str | None = Field(
        default=None, description="Where /metrics listens; the API's host when unset."
    )
    metrics_port: int = Field(
        default=9100,
        ge=0,
        le=65535,
        description="/metrics of every server process, off the public port (0: any free port).",
    )
    docs_enabled: bool = Field(
        default=True,
        description="Serve /docs, /redoc, /openapi.json and /asyncapi.json (off in production).",
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    graceful_shutdown_seconds: float = Field(default=10.0, ge=0)
    auth_cache_ttl_seconds: float = Field(
        default=5.0, ge=0, description="How long a verified key is trusted before re-checking."
    )
    unknown_key_cache_ttl_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description=(
            "How long a token found not to be valid is refused without asking PostgreSQL "
            "again (0 turns that cache off)."
        ),
    )
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = Field(
        default=(),
        description=(
            "Comma-separated addresses or CIDRs of the proxies in front of the API: "
            "X-Forwarded-For is read only from them (the client is its rightmost address not "
            "among them). Empty: the peer is the client."
        ),
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    db: DatabaseSettings = field(default_factory=DatabaseSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    log: LogSettings = field(default_factory=LogSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
