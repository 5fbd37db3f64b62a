"""``python -m herald_cli`` is ``herald``."""

from herald_cli.main import app

app()
