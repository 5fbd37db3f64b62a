"""Circuit breakers and retry policies: the one agreed way to call a dependency.

Nesting: the breaker goes outside and a bounded retry inside, so an exhausted retry sequence
counts as one breaker failure and an open breaker is never retried::

    async with breaker.guard():
        await retry_transient(operation, policy=QUICK, log_name="redis.get")

pybreaker counts failures and owns the state machine; this adapter adds what asyncio needs and
pybreaker lacks: an injectable monotonic clock for the open → half-open timeout, a probe gate so
that only one trial call runs while half-open (pybreaker would let every concurrent caller
through), and the judgement of what a call's outcome says about the dependency (pybreaker would
count a cancellation or an excluded exception as a success, and apply a late result to whatever
state the breaker is in by then).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pybreaker
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from herald_shared.metrics import BREAKER_OPEN

T = TypeVar("T")
_log = structlog.get_logger(__name__)

Clock = Callable[[], float]


class BreakerOpenError(Exception):
    """The dependency's breaker is open: the call was not attempted."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit breaker {name!r} is open")
        self.name = name
        self.retry_after = retry_after


class _CountedFailureError(Exception):
    """Hands one counted failure to pybreaker (which re-raises it, or a trip, to us)."""


def _raise_failed() -> None:
    raise _CountedFailureError


class _StateListener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: Breaker) -> None:
        self._owner = owner

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self._owner._on_state_change(
            getattr(old_state, "name", None), getattr(new_state, "name", "closed")
        )


class Breaker:
    """A circuit breaker around one dependency (a server, a webhook host, ...).

    What a guarded call proves is decided here, and only that is handed to pybreaker:

    - it returned: the dependency is healthy (a success: the failure count starts again);
    - it raised one of ``counts`` (and not one of ``ignores``): the dependency is unhealthy;
    - anything else — an exception of the caller's making, one of ``ignores`` (such as running
      out of local pool connections), a cancellation (the caller gave up) — proves nothing
      either way: it neither counts nor resets the count. A half-open trial that proves
      nothing leaves the breaker half-open for the next caller to probe; a cancelled trial
      reopens it (the dependency did not answer in time).

    A result is applied to the state the call started in: a call that began before the breaker
    changed state (opened, or closed again) ends without effect on the new state.
    """

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        counts: tuple[type[BaseException], ...] = (Exception,),
        ignores: tuple[type[BaseException], ...] = (),
        clock: Clock = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
        exported: bool = True,
    ) -> None:
        """``exported``: whether ``herald_breaker_open{breaker=name}`` reports this breaker
        (Herald's own dependencies); breakers without a bounded set of names (webhook
        destinations) report through ``on_change`` instead."""
        self.name = name
        self._exported = exported
        if exported:
            BREAKER_OPEN.labels(name).set(0)
        self.reset_timeout = reset_timeout
        self._counts = counts
        self._ignores = ignores
        self._clock = clock
        self._opened_at = 0.0
        #: Bumped on every state change: a result is applied only in the state it started in.
        self._generation = 0
        self._probe = asyncio.Lock()
        self._on_change = on_change
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            # The adapter decides when the timeout has passed (with its own clock); pybreaker's
            # wall-clock check must never be the one that holds a call back.
            reset_timeout=0,
            name=name,
            listeners=[_StateListener(self)],
            throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return str(self._breaker.current_state)

    @property
    def is_open(self) -> bool:
        return self.state != "closed" and self._remaining() > 0

    def _remaining(self) -> float:
        return self._opened_at + self.reset_timeout - self._clock()

    def _on_state_change(self, old: str | None, new: str) -> None:
        self._generation += 1
        if new == "open":
            self._opened_at = self._clock()
        if self._exported:
            BREAKER_OPEN.labels(self.name).set(0 if new == "closed" else 1)
        _log.warning("breaker state changed", breaker=self.name, old=old, new=new)
        if self._on_change is not None:
            self._on_change(self.name, new)

    def _counted(self, error: BaseException) -> bool:
        return isinstance(error, self._counts) and not isinstance(error, self._ignores)

    def _record(self, generation: int, *, healthy: bool) -> None:
        """Hand one outcome to pybreaker, unless the state changed since the call began."""
        if generation != self._generation:
            return
        if healthy:
            self._breaker.call(lambda: None)
            return
        with contextlib.suppress(_CountedFailureError):
            self._breaker.call(_raise_failed)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the block under the breaker; raises BreakerOpenError without running it when open."""
        if self.state == "closed":
            generation = self._generation
            try:
                yield
            except BaseException as exc:
                if self._counted(exc):
                    self._record(generation, healthy=False)
                raise
            self._record(generation, healthy=True)
            return
        remaining = self._remaining()
        if remaining > 0 or self._probe.locked():
            raise BreakerOpenError(self.name, max(remaining, 0.0) or self.reset_timeout)
        async with self._probe:
            if self.state == "open":
                self._breaker.half_open()
            generation = self._generation
            try:
                yield
            except asyncio.CancelledError:
                # A trial that never heard back: the dependency did not answer in time.
                self._record(generation, healthy=False)
                raise
            except BaseException as exc:
                if self._counted(exc):
                    self._record(generation, healthy=False)
                raise
            self._record(generation, healthy=True)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A bounded retry: how many attempts, and the exponential backoff (with jitter) between."""

    attempts: int
    initial_delay: float
    max_delay: float
    retry_on: tuple[type[BaseException], ...]


def _log_retry(log_name: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        _log.warning(
            "retrying",
            operation=log_name,
            attempt=state.attempt_number,
            sleep_seconds=round(state.upcoming_sleep, 3),
            error=repr(error),
        )

    return before_sleep


async def retry_transient(
    operation: Callable[[], Awaitable[T]], *, policy: RetryPolicy, log_name: str
) -> T:
    """Run ``operation``, retrying only the policy's (transient) exceptions; every retry is logged.

    Only whitelisted exception types are retried: cancellation and anything unexpected
    propagate at once.

    The first attempt runs before tenacity is set up: nearly every call succeeds at once, and
    tenacity's per-call set-up (its state, and an ``inspect`` of each of its strategies) cost
    more than a cache read. A transient failure of that attempt is handed to tenacity as the
    outcome of its own first attempt, so backoff, logging and the attempt count are tenacity's.
    """
    try:
        return await operation()
    except policy.retry_on as exc:
        if policy.attempts <= 1:
            raise
        first_failure: BaseException | None = exc
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_delay, max=policy.max_delay, jitter=policy.initial_delay
        ),
        retry=retry_if_exception_type(policy.retry_on),
        before_sleep=_log_retry(log_name),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await operation()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover
