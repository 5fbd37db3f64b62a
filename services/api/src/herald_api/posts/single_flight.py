"""Coalescing concurrent identical reads in one process (a "single flight").

When many requests miss the cache for the same post at once, one database read serves them
all instead of a stampede. The read runs as its own task, so a caller that goes away (a client
disconnect cancels its request) does not cancel it for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[T]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, load: Callable[[], Coroutine[Any, Any, T]]) -> T:
        flight = self._flights.get(key)
        # A finished flight stays registered until its done-callback runs (the next turn of
        # the loop); a caller arriving in between must not be handed that older result.
        if flight is None or flight.done():
            flight = asyncio.create_task(load())
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        return await asyncio.shield(flight)

    def _land(self, key: Hashable, flight: asyncio.Task[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here too, in case every caller went away
