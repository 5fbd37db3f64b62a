"""``herald keys``: create, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from herald_cli.database import with_connection
from herald_shared import accounts
from herald_shared.apikeys import Role

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@app.command("create")
def create(
    account: Annotated[str, typer.Option(help="Account name; created when missing.")],
    role: Annotated[Role, typer.Option(help="member: own posts; admin: everything.")] = Role.MEMBER,
) -> None:
    """Create a key. The key itself is printed once, alone on the last line."""
    if not 1 <= len(account) <= 100:
        raise typer.BadParameter("account names are 1 to 100 characters", param_hint="--account")
    key = with_connection(lambda conn: accounts.create_key(conn, account, role))
    typer.echo(f"created key {key.key_id} for account {account!r} with role {role.value}")
    typer.echo("store it now: it cannot be shown again", err=True)
    typer.echo(key.token)


@app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key id shown by `keys list`.")]) -> None:
    """Revoke a key; requests with it are refused within the API's auth cache TTL."""
    if not with_connection(lambda conn: accounts.revoke_key(conn, key_id)):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked key {key_id}")


@app.command("list")
def list_keys() -> None:
    """List keys (ids, accounts, roles and state; never the keys themselves)."""
    keys = with_connection(accounts.list_keys)
    typer.echo(f"{'KEY ID':<14} {'ACCOUNT':<24} {'ROLE':<7} {'CREATED':<20} STATE")
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        typer.echo(
            f"{key.key_id:<14} {key.account_name[:24]:<24} {key.role.value:<7} "
            f"{key.created_at:%Y-%m-%d %H:%M:%S}  {state}"
        )
