"""``/metrics`` of an API running several server processes reports all of them together."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import Processes

pytestmark = pytest.mark.slow

REQUESTS = 40


def _livez_count(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "herald_http_requests"
        for sample in family.samples
        if sample.name == "herald_http_requests_total" and sample.labels.get("route") == "/livez"
    )


async def test_metrics_add_up_over_every_server_process(processes: Processes) -> None:
    _, base_url = await processes.start_api({"HERALD_API_PROCESSES": "2"})
    # A new connection per request, so the kernel spreads them over both processes.
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=no_reuse) as http:
        for _ in range(REQUESTS):
            assert (await http.get("/livez")).status_code == 200
        metrics = await http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert _livez_count(metrics.text) == REQUESTS
