"""The inbox claim writes its two values into SQL: only values that cannot carry a quote pass."""

from __future__ import annotations

import uuid

import pytest

from herald_shared.messaging.consumer import Consumer
from herald_shared.messaging.handlers import HandlerTable
from herald_shared.messaging.inbox import check_consumer_name, claim_sql
from herald_shared.settings import AmqpSettings, ConsumerSettings


@pytest.mark.parametrize("name", ["worker", "cache-invalidator", "bench.throughput_2", "t0a1b2c3"])
def test_service_names_are_consumer_names(name: str) -> None:
    assert check_consumer_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Worker", "-worker", "worker'; DROP TABLE posts; --", "a b", "x" * 65, "wörker"]
)
def test_names_that_could_break_out_of_a_literal_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="does not match"):
        check_consumer_name(name)


def test_the_claim_names_the_consumer_and_the_canonical_event_id() -> None:
    event_id = uuid.UUID("6f1c2b0e-5d9a-4f4e-8c3b-2a1d0e9f8b7c")
    sql = claim_sql("worker", event_id)
    assert sql.startswith("BEGIN; INSERT INTO processed_events")
    assert "VALUES ('worker', '6f1c2b0e-5d9a-4f4e-8c3b-2a1d0e9f8b7c')" in sql


def test_an_event_id_that_is_not_a_uuid_object_is_refused() -> None:
    with pytest.raises(TypeError, match=r"uuid\.UUID"):
        claim_sql("worker", "6f1c2b0e-5d9a-4f4e-8c3b-2a1d0e9f8b7c')--")  # type: ignore[arg-type]


def test_a_consumer_with_an_unusable_name_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="does not match"):
        Consumer(
            "Bad Name", HandlerTable(), db=None, amqp=AmqpSettings(), settings=ConsumerSettings()
        )
