"""``herald limits``: per-account rate-limit overrides."""

from __future__ import annotations

from typing import Annotated

import typer

from herald_cli.database import with_connection
from herald_shared import accounts

app = typer.Typer(help="Per-account rate-limit overrides.", no_args_is_help=True)

Account = Annotated[str, typer.Argument(help="Account name.")]


@app.command("set")
def set_(
    account: Account,
    read: Annotated[int | None, typer.Option(min=1, help="Reads per window.")] = None,
    write: Annotated[int | None, typer.Option(min=1, help="Writes per window.")] = None,
) -> None:
    """Override an account's read and/or write budget (applies within the API's auth cache TTL)."""
    if read is None and write is None:
        raise typer.BadParameter("give --read and/or --write (use `limits clear` to remove)")
    if not with_connection(lambda conn: accounts.set_limits(conn, account, read, write)):
        typer.echo(f"no account named {account!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"limits for {account!r}: read={read or 'default'} write={write or 'default'}")


@app.command("clear")
def clear(account: Account) -> None:
    """Return an account to the default limits."""
    if not with_connection(lambda conn: accounts.set_limits(conn, account, None, None)):
        typer.echo(f"no account named {account!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"limits for {account!r}: defaults")


@app.command("list")
def list_() -> None:
    """Show every override."""
    overrides = with_connection(accounts.list_limits)
    typer.echo(f"{'ACCOUNT':<24} {'READ':>8} {'WRITE':>8}")
    for o in overrides:
        read, write = o.read_per_window or "-", o.write_per_window or "-"
        typer.echo(f"{o.account_name[:24]:<24} {read:>8} {write:>8}")
