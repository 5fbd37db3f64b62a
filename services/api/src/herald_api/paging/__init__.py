"""Keyset pagination for every list the API serves: opaque signed cursors and page assembly."""
