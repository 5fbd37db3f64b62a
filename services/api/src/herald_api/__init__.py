"""Herald's HTTP API service."""
