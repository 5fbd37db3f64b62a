"""Private Redis key prefixes for test runs, and removing their keys afterwards."""

from __future__ import annotations

import redis.asyncio as redis

REDIS_URL = "redis://127.0.0.1:6379/0"


async def delete_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix``; returns how many."""
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            deleted += await client.delete(key)
    finally:
        await client.aclose()
    return deleted
