"""The ``herald`` command: one entry point, one sub-command group per concern."""

from __future__ import annotations

import asyncio

import typer

from herald_cli import dlq, events, keys, limits, status, tracing
from herald_cli.database import with_connection_async
from herald_shared.migrate import upgrade
from herald_shared.settings import AmqpSettings, DatabaseSettings

app = typer.Typer(
    name="herald",
    help="Operate a Herald deployment.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(dlq.app, name="dlq")
app.add_typer(limits.app, name="limits")
app.command("trace")(tracing.trace_command)
app.add_typer(events.app, name="events")


@app.command()
def migrate(
    revision: str = typer.Argument("head", help="Target revision; the newest by default."),
) -> None:
    """Apply the database migrations (HERALD_DB_DSN)."""
    asyncio.run(upgrade(DatabaseSettings().dsn, revision))
    typer.echo(f"database migrated to {revision}")


def _age(age: object) -> str:
    return "-" if age is None else f"{age.total_seconds():.1f}s"  # type: ignore[attr-defined]


@app.command("status")
def show_status() -> None:
    """Queues (ready, retrying, dead letters, consumers) and the outbox backlog."""

    async def gather() -> tuple[list[status.QueueStatus], status.OutboxStatus]:
        queues = await status.queue_status(AmqpSettings())
        outbox = await with_connection_async(status.outbox_status)
        return queues, outbox

    queues, outbox = asyncio.run(gather())
    typer.echo(f"{'QUEUE':<36} {'READY':>7} {'RETRYING':>9} {'DEAD':>6} {'CONSUMERS':>10}")
    for q in queues:
        cells = [
            "-" if v is None else str(v) for v in (q.ready, q.retrying, q.dead_letters, q.consumers)
        ]
        typer.echo(f"{q.queue:<36} {cells[0]:>7} {cells[1]:>9} {cells[2]:>6} {cells[3]:>10}")
    typer.echo(f"\noutbox: {outbox.unpublished} unpublished, oldest {_age(outbox.oldest_age)}")
