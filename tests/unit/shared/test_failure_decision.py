"""The consumer's one decision after running an event's handlers, as a pure function: ack,
retry through queue N, defer (no attempt spent, intake paused) or dead-letter with a reason."""

from __future__ import annotations

import asyncpg
import pytest

from herald_shared.messaging.failures import (
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
from herald_shared.resilience import BreakerOpenError
from herald_shared.settings import ConsumerSettings

SETTINGS = ConsumerSettings(
    retry_delays_seconds=[1.0, 5.0, 30.0], max_deferrals=4, pause_seconds=2.5
)


def decision(error: BaseException | None, *, attempt: int = 1, deferrals: int = 0) -> object:
    return decide(error, attempt=attempt, deferrals=deferrals, settings=SETTINGS)


def test_success_is_acked() -> None:
    assert decision(None) == Ack()
    assert decision(None, attempt=4, deferrals=4) == Ack()


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
    assert decision(down, attempt=3, deferrals=1) == Defer(pause_seconds=7.0, attempts=2)
    assert decision(BreakerOpenError("db", retry_after=3.0)) == Defer(pause_seconds=3.0, attempts=0)


def test_a_dependency_down_without_a_time_pauses_for_the_configured_pause() -> None:
    for error in (DependencyUnavailableError("redis"), asyncpg.CannotConnectNowError("starting")):
        assert decision(error, attempt=1) == Defer(pause_seconds=2.5, attempts=0)


def test_after_the_last_deferral_an_unavailable_dependency_spends_attempts() -> None:
    down = DependencyUnavailableError("redis")
    assert isinstance(decision(down, deferrals=3), Defer)
    assert decision(down, attempt=1, deferrals=4) == Retry(step=0, attempts=1)
    assert decision(down, attempt=4, deferrals=4) == DeadLetter(RETRIES_EXHAUSTED, attempts=4)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (DependencyUnavailableError("redis"), Failure.UNAVAILABLE),
        (BreakerOpenError("redis", retry_after=1.0), Failure.UNAVAILABLE),
        (asyncpg.TooManyConnectionsError("full"), Failure.UNAVAILABLE),
        # Today every OSError and TimeoutError counts as "the database is away".
        (ConnectionRefusedError(), Failure.UNAVAILABLE),
        (TimeoutError(), Failure.UNAVAILABLE),
        (PermanentError("no"), Failure.PERMANENT),
        (TransientError("again"), Failure.FAILED),
        (HandlerTimeoutError("slow"), Failure.FAILED),
        (KeyError("bug"), Failure.FAILED),
    ],
)
def test_errors_are_classified_by_what_they_say(error: BaseException, kind: Failure) -> None:
    assert classify(error) is kind


def test_outcomes_are_the_metric_labels() -> None:
    assert [d.outcome for d in (Ack(), Retry(0, 1), Defer(1.0, 0), DeadLetter("x", 1))] == [
        "ok",
        "retried",
        "deferred",
        "dead_lettered",
    ]
