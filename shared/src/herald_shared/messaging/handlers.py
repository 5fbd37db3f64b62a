"""What handlers are, how a service registers them, and how they say something went wrong.

A handler is a plain ``async def`` taking the typed event first and its dependencies as keyword
arguments; no broker type appears in its signature. There are three kinds:

- an **inbox** handler, ``async def h(event: Event[P], tx: Connection, *, deps…) -> None``, runs
  in a transaction that first records (consumer, event id) in the inbox: a redelivered event is
  skipped, and the handler's own writes on ``tx`` commit atomically with that record;
- an **idempotent transactional** handler has the same signature and runs in a transaction too,
  but without the inbox record: it is idempotent by construction (a version-checked write, a
  unique key, a contribution replaced as a whole), so a redelivery runs it again and changes
  nothing; the transaction only keeps its own writes atomic;
- an **idempotent** handler, ``async def h(event: Event[P], *, deps…) -> None``, is idempotent
  by construction (a cache delete) and needs neither.

The handlers of one event share one transaction when any of them takes one, and the inbox record
is written in it when any of them uses the inbox.

A service builds one ``HandlerTable``, registering each handler under the event model it
handles (``table.inbox(PostCreated, enrich_post)``): a misspelt type cannot be written, and
mypy checks that the handler's ``Event[...]`` accepts the model and that the dependencies bound
at registration fit its keyword parameters. The table's event types are also what the service's
queue is bound to.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Concatenate, Generic, ParamSpec, TypeVar

from herald_shared.db import Connection
from herald_shared.events import EventData, EventEnvelope


class PermanentError(Exception):
    """Retrying cannot help (bad data, a rule violated): dead-letter at once."""


class TransientError(Exception):
    """Worth retrying soon (a timeout, a conflict)."""


class HandlerTimeoutError(TransientError):
    """The handler ran past its deadline (retried like any transient failure)."""


class DependencyUnavailableError(Exception):
    """A dependency is known to be down: reschedule without spending an attempt, and pause."""

    def __init__(self, dependency: str, retry_after: float | None = None) -> None:
        super().__init__(f"{dependency} is unavailable")
        self.dependency = dependency
        self.retry_after = retry_after


P = TypeVar("P", bound=EventData, covariant=True)
M = TypeVar("M", bound=EventData)
Deps = ParamSpec("Deps")


@dataclass(frozen=True, slots=True)
class Event(Generic[P]):
    """One delivery of an event, as a handler receives it: the typed payload and the envelope's
    facts. ``Event[PostCreated]`` is an ``Event[PostSnapshot]`` too, so one handler typed for a
    common base (or a union) can be registered for several models."""

    payload: P
    id: uuid.UUID
    type: str
    aggregate_id: uuid.UUID
    aggregate_version: int
    occurred_at: datetime
    #: 1 for the first delivery; grows with each trip through the retry queues.
    attempt: int
    #: The envelope as received, for handlers that pass the event on whole (webhooks). Read the
    #: typed ``payload``, not ``envelope.data``.
    envelope: EventEnvelope = field(repr=False)


def event_of(envelope: EventEnvelope, payload: M, attempt: int) -> Event[M]:
    """The event a handler receives for ``envelope``, whose payload decoded to ``payload``."""
    return Event(
        payload=payload,
        id=envelope.id,
        type=envelope.type,
        aggregate_id=envelope.aggregate_id,
        aggregate_version=envelope.aggregate_version,
        occurred_at=envelope.occurred_at,
        attempt=attempt,
        envelope=envelope,
    )


@dataclass(frozen=True, slots=True)
class Step:
    """One registered handler, its dependencies bound: called as ``call(event, tx)`` when it
    takes a transaction, ``call(event)`` otherwise (the table checked the types when it was
    made)."""

    call: Callable[..., Awaitable[None]]
    uses_inbox: bool
    #: Takes the transaction as its second argument (every inbox handler does).
    takes_tx: bool = False


@dataclass(slots=True)
class Route:
    """Everything registered for one (event type, schema version): the model that decodes its
    payload and the handlers, run in registration order."""

    model: type[EventData]
    steps: list[Step] = field(default_factory=list)

    @property
    def uses_inbox(self) -> bool:
        """True when any handler needs the inbox: then all of them run in its transaction."""
        return any(step.uses_inbox for step in self.steps)

    @property
    def uses_transaction(self) -> bool:
        """True when any handler takes a transaction (with the inbox record or without)."""
        return any(step.takes_tx for step in self.steps)


class HandlerTable:
    """A service's handlers, keyed by the model of the event each one handles."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, int], Route] = {}

    def inbox(
        self,
        model: type[M],
        handler: Callable[Concatenate[Event[M], Connection, Deps], Awaitable[None]],
        /,
        *args: Deps.args,
        **deps: Deps.kwargs,
    ) -> None:
        """Run ``handler(event, tx, **deps)`` for every ``model`` event, in the inbox
        transaction ``tx``. Its database effects go on ``tx`` (plain SQL: nest with
        ``SAVEPOINT``, not asyncpg's ``transaction()``)."""
        self._add(model, _step(handler, args, deps, uses_inbox=True, takes_tx=True))

    def idempotent_tx(
        self,
        model: type[M],
        handler: Callable[Concatenate[Event[M], Connection, Deps], Awaitable[None]],
        /,
        *args: Deps.args,
        **deps: Deps.kwargs,
    ) -> None:
        """Run ``handler(event, tx, **deps)`` for every ``model`` event in a transaction ``tx``
        that holds no inbox record: the handler must be idempotent by construction (a redelivery
        runs it again). Its statements go on ``tx`` as an inbox handler's do; if another handler
        of the same event uses the inbox, they all share its transaction."""
        self._add(model, _step(handler, args, deps, uses_inbox=False, takes_tx=True))

    def idempotent(
        self,
        model: type[M],
        handler: Callable[Concatenate[Event[M], Deps], Awaitable[None]],
        /,
        *args: Deps.args,
        **deps: Deps.kwargs,
    ) -> None:
        """Run ``handler(event, **deps)`` for every ``model`` event, without the inbox: the
        handler must be idempotent by construction, since a redelivery runs it again."""
        self._add(model, _step(handler, args, deps, uses_inbox=False, takes_tx=False))

    def _add(self, model: type[EventData], step: Step) -> None:
        route = self._routes.setdefault((model.type, model.schema_version), Route(model))
        if route.model is not model:
            # One payload is decoded once, by one model: each handler must get the one it named.
            raise ValueError(
                f"{model.type} v{model.schema_version} is decoded by {route.model.__name__} "
                f"already, not {model.__name__}"
            )
        route.steps.append(step)

    def route(self, event_type: str, schema_version: int) -> Route | None:
        return self._routes.get((event_type, schema_version))

    @property
    def event_types(self) -> tuple[str, ...]:
        """The types this table handles, sorted: the routing keys its queue is bound to."""
        return tuple(sorted({event_type for event_type, _ in self._routes}))

    @property
    def uses_inbox(self) -> bool:
        return any(route.uses_inbox for route in self._routes.values())

    @property
    def uses_database(self) -> bool:
        """True when any handler runs in a transaction the runtime opens."""
        return any(route.uses_transaction for route in self._routes.values())


def _step(
    handler: Callable[..., Awaitable[None]],
    args: tuple[object, ...],
    deps: dict[str, object],
    *,
    uses_inbox: bool,
    takes_tx: bool,
) -> Step:
    if args:
        # The event (and the transaction) come first when the runtime calls the handler.
        raise TypeError("bind a handler's dependencies as keyword arguments")
    return Step(functools.partial(handler, **deps), uses_inbox, takes_tx)
