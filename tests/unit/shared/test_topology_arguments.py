"""The arguments each consumer queue is declared with, as the settings choose them."""

from __future__ import annotations

from herald_shared.messaging.topology import consumer_queues

AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def test_quorum_queues_dead_letter_at_least_once_and_limit_deliveries() -> None:
    queues = consumer_queues("ns", "worker", retry_delays=[1.0, 5.0], delivery_limit=7)
    declared = queues.arguments()
    assert declared["ns.worker"] == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7,
        **AT_LEAST_ONCE,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "ns.worker.dlq",
    }
    assert declared["ns.worker.retry.5000ms.quorum"] == {
        "x-queue-type": "quorum",
        **AT_LEAST_ONCE,
        "x-message-ttl": 5000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "ns.worker",
    }
    assert declared["ns.worker.dlq"] == {"x-queue-type": "quorum"}
    assert list(declared) == [
        "ns.worker.dlq",
        "ns.worker",
        "ns.worker.retry.1000ms.quorum",
        "ns.worker.retry.5000ms.quorum",
    ], "each queue is declared after the one it dead-letters to"


def test_at_least_once_dead_lettering_can_be_left_out() -> None:
    declared = consumer_queues("ns", "worker", at_least_once=False).arguments()
    for arguments in declared.values():
        assert arguments.get("x-queue-type") == "quorum"
        assert not AT_LEAST_ONCE.keys() & arguments.keys()
    assert declared["ns.worker"]["x-delivery-limit"] == 5


def test_classic_queues_keep_their_names_and_have_no_limit() -> None:
    queues = consumer_queues("ns", "worker", retry_delays=[1.0], quorum=False)
    declared = queues.arguments()
    assert list(declared) == ["ns.worker.dlq", "ns.worker", "ns.worker.retry.1000ms"]
    assert declared["ns.worker"] == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "ns.worker.dlq",
    }
