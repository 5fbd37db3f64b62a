"""Operational endpoints off the public surface: ``/metrics`` only on the metrics port, and the
API documents (``/docs``, ``/redoc``, ``/openapi.json``, ``/asyncapi.json``) only where the
setting allows them."""

from __future__ import annotations

import socket
from dataclasses import replace

import httpx

from herald_api.metrics_endpoint import serve_metrics
from herald_api.settings import ServerSettings, Settings
from tests.support.apps import in_process_client
from tests.support.http import assert_problem

DOCUMENTS = ("/docs", "/redoc", "/openapi.json", "/asyncapi.json")


async def test_the_public_app_serves_no_metrics(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/metrics"), 404)


async def test_documents_are_served_by_default(client: httpx.AsyncClient) -> None:
    for path in DOCUMENTS:
        assert (await client.get(path)).status_code == 200, path


async def test_documents_can_be_switched_off(settings: Settings) -> None:
    quiet = replace(settings, server=ServerSettings(docs_enabled=False))
    async with in_process_client(quiet) as http:
        for path in DOCUMENTS:
            assert_problem(await http.get(path), 404)
        assert (await http.get("/livez")).status_code == 200


async def test_the_metrics_port_serves_the_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).status_code == 200  # counted, then scraped
    server = serve_metrics("127.0.0.1", 0)
    assert server is not None
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert 'herald_http_requests_total{method="GET",route="/livez"' in response.text


def test_a_taken_metrics_port_is_logged_not_fatal() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert serve_metrics("127.0.0.1", taken.getsockname()[1]) is None
