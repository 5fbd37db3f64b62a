"""Acknowledgements sent in batches: one ``basic.ack(multiple=True)`` for the deliveries whose
handling ended together, instead of one frame (and one drain of the socket) per message.

The consumer tells ``Acks`` about every delivery as it arrives (``delivered``), and asks for an
ack only once the message's effects are committed (or its re-published copy confirmed):
``ack`` marks the delivery done and schedules a flush ``FLUSH_DELAY_SECONDS`` later (at once when
``max_held`` acks are waiting), so the acks asked for meanwhile go out together: handlers end in
turns of the event loop of their own (each is woken by its own reply), so flushing every turn
would send one ack per message all the same. The delay costs nothing but a little of the
prefetch window: the effects are committed before the ack is asked for. A nack or reject is
sent at once by the caller, which then calls ``forget``.

A multiple ack covers every unacknowledged delivery of the channel up to its tag, so a flush
acks only the *prefix*: the oldest outstanding deliveries, up to the first one still being
handled. Nothing is acked before its own ``ack`` call, nor across a delivery still in flight;
a delivery nacked (and forgotten) is no longer outstanding, so the prefix goes past it without
touching it. Done deliveries waiting behind one still in flight are held, at most
``max_held`` of them (they count against the prefetch, and a crash redelivers them): past that
they are acked one by one.

A crash between an event's commit and its ack can only redeliver it, which the inbox (or an
idempotent handler) absorbs — the same as a crash just before a single ack. Tags belong to a
channel: when the channel closes, its state is dropped (the broker redelivers what was unacked).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiormq.abc import AbstractChannel

from herald_shared.messaging.connection import BROKER_ERRORS

_log = structlog.get_logger(__name__)

#: How long an ack asked for may wait for others to go out with.
FLUSH_DELAY_SECONDS = 0.002


@dataclass(slots=True)
class _Channel:
    """The deliveries of one channel not yet acked or forgotten, oldest (lowest tag) first,
    each mapped to whether its ack was asked for."""

    channel: AbstractChannel
    outstanding: dict[int, bool] = field(default_factory=dict)


class Acks:
    def __init__(self, *, max_held: int) -> None:
        self._max_held = max_held
        self._channels: dict[int, _Channel] = {}
        self._flush: asyncio.Handle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._last: asyncio.Task[None] | None = None
        #: Acks (and forgets) since the last flush.
        self._waiting = 0

    def delivered(self, message: AbstractIncomingMessage) -> None:
        """A delivery arrived (before anything else is done with it)."""
        channel = message.channel
        state = self._channels.get(id(channel))
        if state is None or state.channel is not channel:
            state = self._channels[id(channel)] = _Channel(channel)
        assert message.delivery_tag is not None
        state.outstanding[message.delivery_tag] = False

    def ack(self, message: AbstractIncomingMessage) -> None:
        """The message's effects are committed: ack it with the next flush."""
        state = self._channels.get(id(message.channel))
        tag = message.delivery_tag
        if state is None or state.channel is not message.channel or tag not in state.outstanding:
            # Not seen arriving (or its channel was replaced): ack it alone, as before.
            self._send(message.channel, [(tag or 0, False)])
            return
        state.outstanding[tag] = True
        self._schedule()

    def forget(self, message: AbstractIncomingMessage) -> None:
        """The message was nacked or rejected (or is otherwise no longer this consumer's)."""
        state = self._channels.get(id(message.channel))
        if state is not None and state.outstanding.pop(message.delivery_tag or 0, None) is not None:
            self._schedule()  # it may have been what held the prefix back

    async def flush(self) -> None:
        """Send every ack asked for now (for stopping: in-flight handlers have finished)."""
        if self._flush is not None:
            self._flush.cancel()
        self._run_flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    @property
    def held(self) -> int:
        """Acks asked for and not sent yet."""
        return sum(sum(s.outstanding.values()) for s in self._channels.values())

    def _schedule(self) -> None:
        waiting = self._waiting = self._waiting + 1
        if waiting >= self._max_held:
            if self._flush is not None:
                self._flush.cancel()
            self._flush = asyncio.get_running_loop().call_soon(self._run_flush)
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(
                FLUSH_DELAY_SECONDS, self._run_flush
            )

    def _run_flush(self) -> None:
        self._flush = None
        self._waiting = 0
        for key, state in list(self._channels.items()):
            if state.channel.is_closed:
                del self._channels[key]
                continue
            self._flush_channel(state)

    def _flush_channel(self, state: _Channel) -> None:
        outstanding = state.outstanding
        sends: list[tuple[int, bool]] = []
        last = None
        for tag, done in outstanding.items():
            if not done:
                break
            last = tag
        if last is not None:
            for tag in list(outstanding):
                del outstanding[tag]
                if tag == last:
                    break
            sends.append((last, True))
        held = [tag for tag, done in outstanding.items() if done]
        if len(held) > self._max_held:
            for tag in held:
                del outstanding[tag]
                sends.append((tag, False))
        if sends:
            self._send(state.channel, sends)

    def _send(self, channel: AbstractChannel, sends: list[tuple[int, bool]]) -> None:
        # Each flush's acks go out after the previous flush's: an ack of one flush must never
        # overtake another's (a multiple ack past a tag held for a single ack would make that
        # single ack refer to an unknown tag, which closes the channel).
        task = asyncio.get_running_loop().create_task(self._acks(channel, sends, self._last))
        self._last = task
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    @staticmethod
    async def _acks(
        channel: AbstractChannel,
        sends: list[tuple[int, bool]],
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            for tag, multiple in sends:
                await channel.basic_ack(tag, multiple=multiple)
        except BROKER_ERRORS as exc:
            # The channel broke: the broker redelivers what it had not seen acked.
            _log.warning("could not acknowledge", sends=len(sends), error=repr(exc))
