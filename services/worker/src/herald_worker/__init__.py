"""Herald's worker service."""
