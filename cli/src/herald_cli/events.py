"""``herald events``: the committed JSON Schemas of event payloads, and the AsyncAPI document
generated from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from herald_shared import asyncapi, event_schemas

app = typer.Typer(help="Event contracts.", no_args_is_help=True)


@app.command("schemas")
def schemas(
    check: Annotated[
        bool, typer.Option("--check", help="Only compare; exit 1 if a file differs.")
    ] = False,
    directory: Annotated[
        Path, typer.Option(help="Where the schema files live.", file_okay=False)
    ] = event_schemas.SCHEMA_DIR,
) -> None:
    """Write each event type's payload schema and the AsyncAPI document, or with --check verify
    the committed files."""
    document = asyncapi.DOCUMENT_PATH
    if check:
        problems = event_schemas.check_schemas(directory)
        if directory == event_schemas.SCHEMA_DIR:
            problems += asyncapi.document_problems(document, directory)
        for problem in problems:
            typer.echo(problem, err=True)
        if problems:
            raise typer.Exit(1)
        typer.echo("event schemas match the models")
        return
    try:
        changed = event_schemas.write_schemas(directory)
    except event_schemas.IncompatibleSchemaError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        raise typer.Exit(1) from None
    if directory == event_schemas.SCHEMA_DIR and asyncapi.write_document(document, directory):
        changed.append(document)
    for path in changed:
        typer.echo(f"wrote {path}")
    if not changed:
        typer.echo("event schemas already up to date")
