"""Circuit breakers and retry policies: the one agreed way to call a dependency.

Nesting: the breaker goes outside and a bounded retry inside, so an exhausted retry sequence
counts as one breaker failure and an open breaker is never retried::

    async with breaker.guard():
        await retry_transient(operation, policy=QUICK, log_name="redis.get")

pybreaker counts failures and owns the state machine; this adapter adds what asyncio needs and
pybreaker lacks: an injectable monotonic clock for the open → half-open timeout, and a probe
gate so that only one trial call runs while half-open (pybreaker would let every concurrent
caller through).
"""

from __future__ import annotations

import asyncio
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


class _TrialCancelledError(Exception):
    """A half-open trial was cancelled before it finished (carries the cancellation)."""

    def __init__(self, cancelled: asyncio.CancelledError) -> None:
        super().__init__("half-open trial cancelled")
        self.cancelled = cancelled


class _StateListener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: Breaker) -> None:
        self._owner = owner

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self._owner._on_state_change(
            getattr(old_state, "name", None), getattr(new_state, "name", "closed")
        )


class Breaker:
    """A circuit breaker around one dependency (a server, a webhook host, ...)."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        counts: tuple[type[BaseException], ...] = (Exception,),
        clock: Clock = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        BREAKER_OPEN.labels(name).set(0)
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._opened_at = 0.0
        self._probe = asyncio.Lock()
        self._on_change = on_change
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            # The adapter decides when the timeout has passed (with its own clock); pybreaker's
            # wall-clock check must never be the one that holds a call back.
            reset_timeout=0,
            name=name,
            exclude=[lambda exc: not isinstance(exc, (*counts, _TrialCancelledError))],
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
        if new == "open":
            self._opened_at = self._clock()
        BREAKER_OPEN.labels(self.name).set(0 if new == "closed" else 1)
        _log.warning("breaker state changed", breaker=self.name, old=old, new=new)
        if self._on_change is not None:
            self._on_change(self.name, new)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the block under the breaker; raises BreakerOpenError without running it when open."""
        if self.state == "closed":
            with self._breaker.calling():
                yield
            return
        remaining = self._remaining()
        if remaining > 0 or self._probe.locked():
            raise BreakerOpenError(self.name, max(remaining, 0.0) or self.reset_timeout)
        async with self._probe:
            if self.state == "open":
                self._breaker.half_open()
            try:
                with self._breaker.calling():
                    try:
                        yield
                    except asyncio.CancelledError as exc:
                        # pybreaker would count it as a success and close: a trial that
                        # never heard back proves nothing, so it fails (the breaker reopens).
                        raise _TrialCancelledError(exc) from exc
            except _TrialCancelledError as exc:
                raise exc.cancelled from None


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
