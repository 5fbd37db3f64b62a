"""The API as a real server process: serves over HTTP and stops cleanly on SIGTERM."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herald_api.settings import Settings
from tests.conftest import MakeKey
from tests.support.http import assert_problem
from tests.support.processes import STOP_SECONDS
from tests.support.services import Processes

pytestmark = pytest.mark.slow


def requests_counted(metrics: str, method: str, route: str, status: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "herald_http_requests"
        for sample in family.samples
        if sample.name == "herald_http_requests_total"
        and sample.labels == {"method": method, "route": route, "status": status}
    )


async def test_api_server_serves_posts_and_stops_on_sigterm(
    settings: Settings, make_key: MakeKey, processes: Processes
) -> None:
    # The run's own database, broker namespace and Redis prefix, as the in-process tests use.
    api, base_url = await processes.start_api(
        {
            "HERALD_API_HOST": "127.0.0.1",
            "HERALD_API_PROCESSES": "1",
            "HERALD_REDIS_URL": settings.redis.url.get_secret_value(),
        }
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        key = await make_key()

        created = await http.post(
            "/v1/posts",
            json={"title": "Over the wire", "body": "real HTTP", "status": "published"},
            headers=key.headers,
        )
        assert created.status_code == 201, created.text
        assert created.headers["ETag"] == '"1"'
        assert created.headers["x-request-id"]
        url = created.headers["Location"]

        got = await http.get(url, headers=key.headers)
        assert got.status_code == 200
        assert got.json() == created.json()

        patched = await http.patch(
            url, json={"title": "Changed"}, headers=key.headers | {"If-Match": '"1"'}
        )
        assert patched.status_code == 200, patched.text
        assert patched.headers["ETag"] == '"2"'

        stale = await http.patch(
            url, json={"title": "Lost update"}, headers=key.headers | {"If-Match": '"1"'}
        )
        assert_problem(stale, 412)

        deleted = await http.delete(url, headers=key.headers | {"If-Match": '"2"'})
        assert deleted.status_code == 204

        assert_problem(await http.get(url, headers=key.headers), 404)

        # One process too writes its metrics where /metrics reads them; /metrics is on the
        # metrics port, not the public one.
        assert_problem(await http.get("/metrics"), 404)
        metrics = (await http.get(f"{await api.metrics_url()}/metrics")).text
        assert requests_counted(metrics, "POST", "/v1/posts", "201") == 1
        assert requests_counted(metrics, "DELETE", "/v1/posts/{post_id}", "204") == 1

    assert await api.terminate(STOP_SECONDS) == 0, api.log_tail(60)
