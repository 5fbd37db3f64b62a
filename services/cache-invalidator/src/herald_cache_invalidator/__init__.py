"""Herald's cache-invalidator service."""
