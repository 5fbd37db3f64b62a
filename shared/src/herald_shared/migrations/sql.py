"""Running a plain SQL script from a migration, one statement at a time."""

from alembic import op


def execute_script(script: str) -> None:
    """Run ``script``: asyncpg prepares each statement, so they are sent one by one.

    Statements are split on ``;``; scripts must not put one inside a string literal or body.
    """
    without_comments = "\n".join(
        line for line in script.splitlines() if not line.strip().startswith("--")
    )
    for statement in without_comments.split(";"):
        if statement.strip():
            op.execute(statement)
