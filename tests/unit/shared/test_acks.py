"""Batched acks: one multiple ack for the oldest deliveries whose handling ended, never past one
still in flight; a nacked (forgotten) delivery is stepped over; held acks past the bound go out
one by one."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage

from herald_shared.messaging.acks import Acks


@dataclass
class FakeChannel:
    sent: list[tuple[int, bool]] = field(default_factory=list)
    is_closed: bool = False

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.sent.append((tag, multiple))


@dataclass
class FakeMessage:
    channel: FakeChannel
    delivery_tag: int


def deliveries(acks: Acks, channel: FakeChannel, count: int) -> list[AbstractIncomingMessage]:
    messages = [cast(Any, FakeMessage(channel, tag)) for tag in range(1, count + 1)]
    for message in messages:
        acks.delivered(message)
    return messages


async def test_acks_of_one_turn_go_out_as_one_multiple_ack_up_to_the_first_in_flight() -> None:
    acks, channel = Acks(max_held=8), FakeChannel()
    m = deliveries(acks, channel, 6)
    acks.ack(m[1])
    acks.ack(m[2])
    await acks.flush()
    assert channel.sent == [], "acked past delivery 1, still in flight"
    acks.ack(m[0])
    acks.ack(m[4])
    await acks.flush()
    assert channel.sent == [(3, True)]
    assert channel.sent == [(3, True)], "acked past delivery 4, still in flight"
    assert acks.held == 1


async def test_a_forgotten_delivery_is_stepped_over() -> None:
    acks, channel = Acks(max_held=8), FakeChannel()
    m = deliveries(acks, channel, 3)
    acks.ack(m[0])
    acks.ack(m[2])
    await acks.flush()
    assert channel.sent == [(1, True)]
    acks.forget(m[1])  # nacked by the consumer
    await acks.flush()
    assert channel.sent == [(1, True), (3, True)]
    assert acks.held == 0


async def test_acks_wait_a_moment_for_others_unless_enough_are_waiting() -> None:
    acks, channel = Acks(max_held=3), FakeChannel()
    m = deliveries(acks, channel, 4)
    acks.ack(m[0])
    acks.ack(m[1])
    await asyncio.sleep(0)
    assert channel.sent == [], "sent at once, not batched"
    acks.ack(m[2])  # the third waiting: flushed on the next turn
    for _ in range(3):
        await asyncio.sleep(0)
    assert channel.sent == [(3, True)]


async def test_acks_held_past_the_bound_go_out_one_by_one() -> None:
    acks, channel = Acks(max_held=2), FakeChannel()
    m = deliveries(acks, channel, 5)
    for message in m[1:]:
        acks.ack(message)
    await acks.flush()
    assert channel.sent == [(2, False), (3, False), (4, False), (5, False)]
    acks.ack(m[0])
    await acks.flush()
    assert channel.sent[-1] == (1, True)
    assert acks.held == 0
