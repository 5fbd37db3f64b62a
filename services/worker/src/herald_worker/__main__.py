"""``python -m herald_worker`` is ``herald-worker``."""

from herald_worker.main import app

app()
