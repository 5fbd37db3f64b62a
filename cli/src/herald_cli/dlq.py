"""``herald dlq``: list, replay and purge a consumer's dead letters (audited before acting)."""

from __future__ import annotations

import asyncio
import getpass
import os
from typing import Annotated

import typer

from herald_cli import deadletters
from herald_cli.database import with_connection
from herald_shared.messaging.topology import ConsumerQueues, consumer_queues
from herald_shared.settings import AmqpSettings, ConsumerSettings

app = typer.Typer(
    help="Dead-letter queues: see why events failed, and send them back.", no_args_is_help=True
)

Consumer = Annotated[
    str, typer.Argument(help="The consuming service, e.g. worker or cache-invalidator.")
]
Limit = Annotated[int, typer.Option(min=1, help="Look at no more than this many dead letters.")]


def _queues(consumer: str) -> tuple[AmqpSettings, ConsumerQueues]:
    settings = AmqpSettings()
    delays = ConsumerSettings().retry_delays_seconds
    queues = consumer_queues(
        settings.namespace, consumer, retry_delays=delays, quorum=settings.quorum_queues
    )
    return settings, queues


def _actor() -> str:
    return os.environ.get("HERALD_ACTOR") or getpass.getuser()


@app.command("list")
def list_(consumer: Consumer, limit: Limit = 1000) -> None:
    """Show the dead letters of a consumer: event, type, reason, attempts, failure times."""
    settings, queues = _queues(consumer)
    letters = asyncio.run(deadletters.list_dead_letters(settings, queues, limit))
    typer.echo(f"{queues.dead_letter}: {len(letters)} dead letter(s)")
    for letter in letters:
        typer.echo(
            f"{letter.event_id}  {letter.event_type:<14} attempts={letter.attempts} "
            f"first={letter.first_failure or '-'} last={letter.last_failure or '-'}\n"
            f"    {letter.reason}: {letter.error}"
        )


@app.command()
def replay(
    consumer: Consumer,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Replay this event id (repeatable).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.1, help="At most this many replays per second.")
    ] = None,
    limit: Limit = 10000,
) -> None:
    """Send dead letters back to the consumer's queue; they keep their event ids. Each batch is
    recorded in the audit table before it is sent."""
    if all_ == bool(ids):
        raise typer.BadParameter("give either --all or at least one --id")
    settings, queues = _queues(consumer)
    chosen = None if all_ else set(ids or [])
    actor = _actor()
    replayed = with_connection(
        lambda conn: deadletters.replay(
            settings, queues, conn, actor=actor, event_ids=chosen, rate=rate, limit=limit
        )
    )
    typer.echo(f"replayed {len(replayed)} event(s) to {queues.main}")
    if chosen is not None and (missing := chosen - set(replayed)):
        typer.echo(f"not found in {queues.dead_letter}: {', '.join(sorted(missing))}", err=True)
        raise typer.Exit(1)


@app.command()
def purge(
    consumer: Consumer,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    limit: Limit = 100000,
) -> None:
    """Delete every dead letter of a consumer (their ids are recorded in the audit table first)."""
    settings, queues = _queues(consumer)
    if not yes:
        typer.confirm(f"Delete every message in {queues.dead_letter}?", abort=True)
    actor = _actor()
    purged = with_connection(
        lambda conn: deadletters.purge(settings, queues, conn, actor=actor, limit=limit)
    )
    typer.echo(f"purged {len(purged)} dead letter(s) from {queues.dead_letter}")
