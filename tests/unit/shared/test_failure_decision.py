"""The consumer's one decision after running an event's handlers, as a pure function: ack,
retry through queue N, defer (no attempt spent, intake paused) or dead-letter with a reason;
and the classification of errors by what failed."""

from __future__ import annotations

import aiormq
import asyncpg
import pytest
import redis.exceptions

from herald_shared.db import DatabaseUnavailableError, PoolExhaustedError
from herald_shared.messaging.failures import (
    OVERLOAD_PAUSE_SECONDS,
    PERMANENT_ERROR,
    RETRIES_EXHAUSTED,
    Ack,
    DeadLetter,
    Defer,
    Failure,
    Retry,
    classify,
    decide,
)
from herald_shared.messaging.handlers import (
    DependencyUnavailableError,
    HandlerTimeoutError,
    PermanentError,
    TransientError,
)
from herald_shared.redis_client import PoolExhaustedError as RedisPoolExhaustedError
from herald_shared.resilience import BreakerOpenError
from herald_shared.settings import ConsumerSettings

SETTINGS = ConsumerSettings(retry_delays_seconds=[1.0, 5.0, 30.0], pause_seconds=2.5)


def decision(error: BaseException | None, *, attempt: int = 1) -> object:
    return decide(error, attempt=attempt, settings=SETTINGS)


def test_success_is_acked() -> None:
    assert decision(None) == Ack()
    assert decision(None, attempt=4) == Ack()


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_a_failure_goes_to_the_retry_queue_of_its_attempt(attempt: int) -> None:
    assert decision(TransientError("conflict"), attempt=attempt) == Retry(
        step=attempt - 1, attempts=attempt
    )


def test_a_failure_after_the_last_retry_queue_is_dead_lettered() -> None:
    assert decision(ValueError("bug"), attempt=4) == DeadLetter(RETRIES_EXHAUSTED, attempts=4)


@pytest.mark.parametrize("attempt", [1, 4])
def test_a_permanent_error_is_dead_lettered_at_once(attempt: int) -> None:
    assert decision(PermanentError("bad data"), attempt=attempt) == DeadLetter(
        PERMANENT_ERROR, attempts=attempt
    )


def test_a_handler_past_its_deadline_is_this_events_failure_not_an_outage() -> None:
    assert decision(HandlerTimeoutError("too slow"), attempt=2) == Retry(step=1, attempts=2)


def test_a_dependency_down_defers_without_spending_an_attempt_for_as_long_as_it_says() -> None:
    down = DependencyUnavailableError("redis", retry_after=7.0)
    assert decision(down, attempt=3) == Defer(pause_seconds=7.0, attempts=2)
    assert decision(BreakerOpenError("db", retry_after=3.0)) == Defer(pause_seconds=3.0, attempts=0)


def test_a_dependency_down_without_a_time_pauses_for_the_configured_pause() -> None:
    for error in (DependencyUnavailableError("redis"), asyncpg.CannotConnectNowError("starting")):
        assert decision(error, attempt=1) == Defer(pause_seconds=2.5, attempts=0)


def test_an_outage_never_spends_attempts_however_often_the_event_was_put_off() -> None:
    """The event is not at fault: an outage of an hour or a day leaves it waiting, and never
    sends it to the dead-letter queue (the consumer pauses its intake meanwhile)."""
    for attempt in (1, 4, 40):
        down = asyncpg.CannotConnectNowError("starting")
        assert decision(down, attempt=attempt) == Defer(pause_seconds=2.5, attempts=attempt - 1)


def test_running_out_of_pooled_connections_defers_briefly_without_spending_an_attempt() -> None:
    for exhausted in (PoolExhaustedError("busy"), RedisPoolExhaustedError("busy")):
        assert decision(exhausted, attempt=4) == Defer(
            OVERLOAD_PAUSE_SECONDS, attempts=3, overloaded=True
        )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (DependencyUnavailableError("redis"), Failure.UNAVAILABLE),
        (BreakerOpenError("redis", retry_after=1.0), Failure.UNAVAILABLE),
        (DatabaseUnavailableError("connection refused"), Failure.UNAVAILABLE),
        (asyncpg.TooManyConnectionsError("full"), Failure.UNAVAILABLE),
        (asyncpg.ConnectionDoesNotExistError("closed mid-query"), Failure.UNAVAILABLE),
        (asyncpg.AdminShutdownError("terminating"), Failure.UNAVAILABLE),
        (asyncpg.CannotConnectNowError("starting up"), Failure.UNAVAILABLE),
        (redis.exceptions.ConnectionError("refused"), Failure.UNAVAILABLE),
        (aiormq.exceptions.AMQPConnectionError("gone"), Failure.UNAVAILABLE),
        (PoolExhaustedError("busy"), Failure.OVERLOADED),
        (RedisPoolExhaustedError("busy"), Failure.OVERLOADED),
        (redis.exceptions.MaxConnectionsError("too many"), Failure.OVERLOADED),
        (PermanentError("no"), Failure.PERMANENT),
        # What a handler raises itself is its own failure: retried, not an outage.
        (ConnectionRefusedError(), Failure.FAILED),
        (OSError("disk full"), Failure.FAILED),
        (TimeoutError(), Failure.FAILED),
        (asyncpg.QueryCanceledError("statement timeout"), Failure.FAILED),
        (TransientError("again"), Failure.FAILED),
        (HandlerTimeoutError("slow"), Failure.FAILED),
        (KeyError("bug"), Failure.FAILED),
    ],
)
def test_errors_are_classified_by_what_failed(error: BaseException, kind: Failure) -> None:
    assert classify(error) is kind


def test_outcomes_are_the_metric_labels() -> None:
    assert [d.outcome for d in (Ack(), Retry(0, 1), Defer(1.0, 0), DeadLetter("x", 1))] == [
        "ok",
        "retried",
        "deferred",
        "dead_lettered",
    ]
