"""Real Herald service processes for a test: consumers, the worker, the cache-invalidator and
the API, each in its own process group and logging to a file; every group the test started is
killed when it ends (the ``processes`` fixture in tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiormq
import httpx

from herald_shared.messaging.topology import ConsumerQueues
from herald_shared.settings import AmqpSettings
from tests.support.broker import FAST_RETRY_DELAYS, Broker
from tests.support.network import free_port
from tests.support.processes import ServiceProcess, kill_group, start_process
from tests.support.waiting import wait_until

READY_SECONDS = 30.0
INVALIDATOR = "cache-invalidator"
INVALIDATOR_RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0)


@dataclass(slots=True)
class Processes:
    """Starts real processes for one test and kills every process group it started at the end."""

    database_dsn: str
    amqp: AmqpSettings
    redis_prefix: str
    broker: Broker
    log_dir: Path
    #: Retry-delay sets and consumer names the processes declared queues for (so the run can
    #: delete them).
    retry_delays: set[tuple[float, ...]]
    consumers: set[str]
    started: list[ServiceProcess] = field(default_factory=list)

    def base_env(self) -> dict[str, str]:
        return {
            "HERALD_DB_DSN": self.database_dsn,
            "HERALD_AMQP_URL": self.amqp.url.get_secret_value(),
            "HERALD_AMQP_NAMESPACE": self.amqp.namespace,
            "HERALD_REDIS_KEY_PREFIX": self.redis_prefix,
            "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(FAST_RETRY_DELAYS)),
            "HERALD_LOG_LEVEL": "INFO",
            "HERALD_CONSUMER_HEALTH_PORT": "0",
            "HERALD_API_METRICS_PORT": "0",
            # Spans stay with the test's logs, not in the source tree's default directory.
            "HERALD_TRACE_DIR": str(self.log_dir / "traces"),
        }

    def start(self, label: str, args: list[str], env: Mapping[str, str]) -> ServiceProcess:
        log_path = self.log_dir / f"{label}-{len(self.started)}.log"
        merged = {**self.base_env(), **env}
        # The process declares retry queues named after its delays: remember them for cleanup.
        delays = merged.get("HERALD_CONSUMER_RETRY_DELAYS_SECONDS")
        if delays:
            self.retry_delays.add(tuple(float(d) for d in json.loads(delays)))
        process = start_process(args, merged, log_path=log_path)
        service = ServiceProcess(label, process, log_path)
        self.started.append(service)
        return service

    async def start_consumer(
        self,
        name: str,
        *,
        behaviour: str = "ok",
        concurrency: int = 4,
        prefetch: int | None = None,
        grace: float = 10.0,
        retry_delays: Sequence[float] = FAST_RETRY_DELAYS,
        in_process_attempts: int | None = None,
        job_period: float | None = None,
        consumers: int = 1,
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """Start ``tests.support.consumer_app`` and wait until its queue has ``consumers``
        (``env``: more settings)."""
        self.retry_delays.add(tuple(retry_delays))
        settings = {
            "HERALD_TEST_CONSUMER": name,
            "HERALD_TEST_BEHAVIOUR": behaviour,
            "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(retry_delays)),
            "HERALD_CONSUMER_CONCURRENCY": str(concurrency),
            "HERALD_CONSUMER_PREFETCH": str(prefetch or max(2 * concurrency, 8)),
            "HERALD_CONSUMER_SHUTDOWN_GRACE_SECONDS": str(grace),
        }
        if in_process_attempts is not None:
            settings["HERALD_CONSUMER_IN_PROCESS_ATTEMPTS"] = str(in_process_attempts)
        if job_period is not None:
            settings["HERALD_TEST_JOB_PERIOD"] = str(job_period)
        service = self.start(
            name, ["-m", "tests.support.consumer_app"], {**settings, **(env or {})}
        )
        await self.wait_consuming(service, self.broker.queues(name, retry_delays).main, consumers)
        return service

    async def wait_consuming(self, service: ServiceProcess, queue: str, consumers: int = 1) -> None:
        """Wait until ``queue`` has at least ``consumers`` (failing early if ``service`` died)."""

        async def consuming() -> bool:
            service.check_running()
            depth = await self.broker.depth(queue)
            return depth is not None and depth.consumers >= consumers

        await wait_until(
            consuming, seconds=READY_SECONDS, interval=0.05, message=f"{queue} has no consumer"
        )

    async def start_service(
        self, module: str, consumer: str, env: Mapping[str, str], *, consumers: int = 1
    ) -> ServiceProcess:
        """Start a real Herald service (``python -m module``) and wait until it consumes.

        The first one of a test purges what earlier tests left in the service's queue.
        """
        self.consumers.add(consumer)
        if not any(s.label == consumer for s in self.started):
            with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
                await self.broker.purge(self.broker.queues(consumer).main)
        service = self.start(consumer, ["-m", module], env)
        await self.wait_consuming(service, self.broker.queues(consumer).main, consumers)
        return service

    async def start_api(self, env: Mapping[str, str]) -> tuple[ServiceProcess, str]:
        """Start ``python -m herald_api`` on a free port; returns it and its base URL once
        ``/readyz`` answers 200."""
        port = free_port()
        service = self.start("api", ["-m", "herald_api"], {"HERALD_API_PORT": str(port), **env})
        base_url = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            service.check_running()
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
                    return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, seconds=READY_SECONDS, interval=0.1, message="the API is not ready")
        return service, base_url

    @contextlib.asynccontextmanager
    async def invalidator(
        self, *, redis_url: str, env: Mapping[str, str] | None = None
    ) -> AsyncIterator[ServiceProcess]:
        """The real cache-invalidator, consuming the run's namespace, with Redis at ``redis_url``
        (JSON logs, warnings and up); SIGTERMed when the block ends."""
        service = await self.start_service(
            "herald_cache_invalidator",
            INVALIDATOR,
            {
                "HERALD_REDIS_URL": redis_url,
                "HERALD_LOG_LEVEL": "WARNING",
                "HERALD_LOG_JSON": "true",
                "HERALD_CONSUMER_RETRY_DELAYS_SECONDS": json.dumps(list(INVALIDATOR_RETRY_DELAYS)),
                **(env or {}),
            },
        )
        try:
            yield service
        finally:
            await service.stop()

    def invalidator_queues(self) -> ConsumerQueues:
        return self.broker.queues(INVALIDATOR, INVALIDATOR_RETRY_DELAYS)

    def kill_all(self) -> None:
        for service in self.started:
            kill_group(service.process)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=10)
