"""The command-line options every consuming service takes, and how they override settings."""

from __future__ import annotations

from typing import Annotated

import typer

from herald_shared.settings import ConsumerSettings

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
