"""The operator commands cannot import the services, so they keep their own list of consumer
names: it must name exactly the consuming services there are."""

from __future__ import annotations

from herald_cache_invalidator import main as cache_invalidator
from herald_cli.consumers import KNOWN_CONSUMERS
from herald_worker import main as worker


def test_the_cli_knows_every_consuming_service_by_its_consumer_name() -> None:
    assert sorted(KNOWN_CONSUMERS) == sorted(
        [worker.CONSUMER_NAME, cache_invalidator.CONSUMER_NAME]
    )
