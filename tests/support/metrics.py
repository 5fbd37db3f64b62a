"""A real process's Prometheus metrics as a scraper reads them: ``/metrics`` parsed into
samples, and the value of one sample picked by name and labels."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


async def scrape(base_url: str) -> list[Sample]:
    """Every sample ``base_url``/metrics exports now (it must parse as Prometheus text)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def sample_value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` (e.g. ``herald_breaker_open``, or a histogram's
    ``…_count``) with these labels; None when it is not exported."""
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None
