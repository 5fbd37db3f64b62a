"""The command-line options every consuming service takes, and how they override settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Protocol, TypeVar

import typer
import uvloop

from herald_shared.logs import configure_logging
from herald_shared.settings import ConsumerSettings, LogSettings, TelemetrySettings
from herald_shared.telemetry import configure_tracing

Concurrency = Annotated[int | None, typer.Option(min=1, help="Handlers in flight in this process.")]
Prefetch = Annotated[
    int | None, typer.Option(min=1, help="Messages the broker sends ahead (>= concurrency).")
]
Grace = Annotated[
    float | None,
    typer.Option(min=0, help="Seconds to let in-flight handlers finish on SIGTERM."),
]


def with_overrides(
    settings: ConsumerSettings,
    *,
    concurrency: int | None,
    prefetch: int | None,
    grace: float | None,
) -> ConsumerSettings:
    """``settings`` with the options the operator gave on the command line."""
    given = {
        "concurrency": concurrency,
        "prefetch": prefetch,
        "shutdown_grace_seconds": grace,
    }
    return settings.model_copy(update={k: v for k, v in given.items() if v is not None})


class ServiceSettings(Protocol):
    """What every consuming service's settings hold (frozen dataclasses of settings)."""

    @property
    def consumer(self) -> ConsumerSettings: ...

    @property
    def log(self) -> LogSettings: ...

    @property
    def telemetry(self) -> TelemetrySettings: ...


S = TypeVar("S", bound=ServiceSettings)


def health_address(settings: ConsumerSettings, default_port: int) -> tuple[str, int]:
    """Where the service's /livez, /readyz and /metrics listen."""
    port = settings.health_port
    return settings.health_host, default_port if port is None else port


def start_service(
    service: str,
    settings: S,
    run: Callable[[S], Coroutine[Any, Any, None]],
    *,
    concurrency: int | None,
    prefetch: int | None,
    grace: float | None,
) -> None:
    """Apply the command-line options, set up logs and traces, and run the service."""
    consumer = with_overrides(
        settings.consumer, concurrency=concurrency, prefetch=prefetch, grace=grace
    )
    settings = dataclasses.replace(settings, consumer=consumer)  # type: ignore[type-var]
    configure_logging(service, settings.log)
    configure_tracing(service, settings.telemetry)
    uvloop.run(run(settings))
