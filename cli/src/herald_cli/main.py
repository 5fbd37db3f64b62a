"""The ``herald`` command: one entry point, one sub-command group per concern."""

from __future__ import annotations

import asyncio

import typer

from herald_cli import keys
from herald_shared.migrate import upgrade
from herald_shared.settings import DatabaseSettings

app = typer.Typer(
    name="herald",
    help="Operate a Herald deployment.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(keys.app, name="keys")


@app.command()
def migrate(
    revision: str = typer.Argument("head", help="Target revision; the newest by default."),
) -> None:
    """Apply the database migrations (HERALD_DB_DSN)."""
    asyncio.run(upgrade(DatabaseSettings().dsn, revision))
    typer.echo(f"database migrated to {revision}")
