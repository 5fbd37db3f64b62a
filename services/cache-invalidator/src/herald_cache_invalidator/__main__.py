"""``python -m herald_cache_invalidator`` is ``herald-cache-invalidator``."""

from herald_cache_invalidator.main import app

app()
