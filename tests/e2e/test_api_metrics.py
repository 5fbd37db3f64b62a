"""``/metrics`` of an API running several server processes (on its metrics port) reports all
of them together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import Processes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

BURST = 20


def _livez_count(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "herald_http_requests"
        for sample in family.samples
        if sample.name == "herald_http_requests_total" and sample.labels.get("route") == "/livez"
    )


async def test_metrics_add_up_over_every_server_process(
    processes: Processes, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    api, base_url = await processes.start_api(
        {"HERALD_API_PROCESSES": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    )
    sent = 0
    # A new connection per request, in bursts, until both processes have counted some.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=no_reuse) as http:

        async def both_served() -> bool:
            nonlocal sent
            replies = await asyncio.gather(*(http.get("/livez") for _ in range(BURST)))
            assert all(r.status_code == 200 for r in replies)
            sent += BURST
            return len(list(metrics_dir.glob("counter_*.db"))) >= 2

        await wait_until(both_served, seconds=30, message="one process served every request")
        metrics = await http.get(f"{await api.metrics_url()}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert _livez_count(metrics.text) == sent
