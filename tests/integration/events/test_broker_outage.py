"""A consumer whose broker is unreachable still stops within its grace period on SIGTERM, and
its /metrics still answers; its readiness follows whether it really consumes. The broker is cut
off from the consumer process by a proxy (connections reset, or blackholed: open but silent);
the shared broker is untouched."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.broker import AMQP_URL, Broker
from tests.support.faults import FaultProxy
from tests.support.network import free_port
from tests.support.processes import ServiceProcess, kill_group
from tests.support.services import Processes
from tests.support.waiting import wait_until

GRACE = 2.0
#: Time the process needs beyond its grace to log, close its pool and exit.
EXIT_MARGIN = 3.0


@pytest.fixture
async def broker_proxy() -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", 5672)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def start_behind(
    proxy: FaultProxy, processes: Processes, name: str
) -> tuple[ServiceProcess, str]:
    """A consumer process talking to the broker through ``proxy``; returns it and its health
    endpoint's base URL once it consumes."""
    port = free_port()
    service = processes.start(
        name,
        ["-m", "tests.support.consumer_app"],
        {
            "HERALD_TEST_CONSUMER": name,
            "HERALD_AMQP_URL": AMQP_URL.replace(":5672/", f":{proxy.port}/"),
            "HERALD_CONSUMER_HEALTH_PORT": str(port),
            "HERALD_CONSUMER_SHUTDOWN_GRACE_SECONDS": str(GRACE),
        },
    )
    await processes.wait_consuming(service, processes.broker.queues(name).main)
    return service, f"http://127.0.0.1:{port}"


async def get(base_url: str, path: str, *, seconds: float = 10.0) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=seconds) as http:
        return await http.get(path)


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
async def test_sigterm_during_a_broker_outage_exits_within_the_grace_period(
    fault: str, broker_proxy: FaultProxy, processes: Processes, consumer_name: str
) -> None:
    consumer, _ = await start_behind(broker_proxy, processes, consumer_name)
    getattr(broker_proxy, fault)()
    started = time.monotonic()
    kill_group(consumer.process, signal.SIGTERM)
    code = await consumer.wait_exit(GRACE + EXIT_MARGIN + 10)
    took = time.monotonic() - started
    assert took < GRACE + EXIT_MARGIN, f"stopping took {took:.1f} s:\n{consumer.log_tail()}"
    assert code == 0, consumer.log_tail()


async def test_metrics_answer_while_the_broker_is_blackholed(
    broker_proxy: FaultProxy, processes: Processes, consumer_name: str
) -> None:
    consumer, base_url = await start_behind(broker_proxy, processes, consumer_name)
    assert (await get(base_url, "/metrics")).status_code == 200
    broker_proxy.blackhole()
    response = await get(base_url, "/metrics")
    assert response.status_code == 200
    assert "herald_queue_depth" in response.text
    # Still the last depths seen: a scrape that cannot reach the broker reports what it knew.
    assert f'herald_queue_depth{{queue="{processes.broker.queues(consumer_name).main}"}}' in (
        response.text
    )
    broker_proxy.restore()
    assert await consumer.terminate() == 0


async def test_readiness_follows_whether_the_queue_has_this_consumer(
    broker: Broker, processes: Processes, consumer_name: str
) -> None:
    """A consumer whose channel is open but whose consumer the broker cancelled (here: its queue
    was deleted) is not ready, however healthy its connection looks; it is ready again once it
    consumes again."""
    port = free_port()
    consumer = processes.start(
        consumer_name,
        ["-m", "tests.support.consumer_app"],
        {"HERALD_TEST_CONSUMER": consumer_name, "HERALD_CONSUMER_HEALTH_PORT": str(port)},
    )
    queues = broker.queues(consumer_name)
    await processes.wait_consuming(consumer, queues.main)
    base_url = f"http://127.0.0.1:{port}"
    assert (await get(base_url, "/readyz")).status_code == 200

    await broker.delete_queue(queues.main)

    async def unready() -> bool:
        consumer.check_running()
        return (await get(base_url, "/readyz")).status_code == 503

    await wait_until(unready, seconds=20, message="still ready without a consumer")
    assert await consumer.terminate() == 0
