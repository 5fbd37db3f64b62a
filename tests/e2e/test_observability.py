"""One request followed across every service: traces, logs and metrics of real processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herald_cli.tracing import load_traces, render
from tests.conftest import MakeKey
from tests.support.processes import ServiceProcess
from tests.support.services import Processes
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

SERVICES = {"herald-api", "herald-worker", "herald-cache-invalidator"}


def _log_lines(service: ServiceProcess) -> list[dict[str, Any]]:
    lines = []
    for line in service.log_path.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def _http_url(span: dict[str, Any]) -> str | None:
    """The URL an HTTP client span called (older and newer semantic conventions)."""
    attributes: dict[str, Any] = span["attributes"]
    url = attributes.get("url.full", attributes.get("http.url"))
    return str(url) if url is not None else None


async def test_one_post_is_one_trace_across_every_service_with_logs_and_metrics(
    processes: Processes, make_key: MakeKey, tmp_path: Path
) -> None:
    trace_dir = tmp_path / "traces"
    env = {
        "HERALD_TRACE_DIR": str(trace_dir),
        "HERALD_LOG_LEVEL": "INFO",
        # The test's webhook receiver listens on loopback, over plain http.
        "HERALD_WEBHOOKS_ALLOW_PRIVATE": "true",
        "HERALD_WEBHOOKS_ALLOW_HTTP": "true",
    }
    receiver = await Receiver().start()
    worker = await processes.start_service("herald_worker", "worker", env)
    invalidator = await processes.start_service(
        "herald_cache_invalidator", "cache-invalidator", env
    )
    api, base_url = await processes.start_api(env)
    key = await make_key()

    async with httpx.AsyncClient(base_url=base_url, headers=key.headers) as http:
        webhook = await http.post(
            "/v1/webhooks", json={"url": receiver.url, "event_types": ["post.created"]}
        )
        assert webhook.status_code == 201, webhook.text
        receiver.secret = webhook.json()["secret"]
        response = await http.post(
            "/v1/posts",
            json={
                "title": f"traced {uuid.uuid4().hex[:6]}",
                "body": "follow me",
                "status": "published",
            },
        )
        assert response.status_code == 201
        version, trace_id, _, _ = response.headers["traceparent"].split("-")
        assert version == "00"
        post_id = response.json()["id"]

        wanted: dict[str, Callable[[dict[str, Any]], bool]] = {
            "server": lambda s: s["service"] == "herald-api" and s["name"] == "POST /v1/posts",
            # The create is one statement (its CTEs insert the post): asyncpg names the span after
            # its first word.
            "sql": lambda s: (
                s["service"] == "herald-api"
                and "INSERT INTO posts" in str(s["attributes"].get("db.statement", ""))
            ),
            "publish": lambda s: s["name"] == "outbox publish post.created",
            "worker": lambda s: (
                s["service"] == "herald-worker" and s["name"] == "handle post.created"
            ),
            "enriched": lambda s: s["name"] == "outbox publish post.enriched",
            "invalidator": lambda s: (
                s["service"] == "herald-cache-invalidator" and s["name"].startswith("handle post.")
            ),
            "webhook": lambda s: s["service"] == "herald-worker" and s["name"] == "webhook.deliver",
            # The delivery's own HTTP call: asyncpg's spans are CLIENT spans of the worker too.
            "webhook http": lambda s: (
                s["service"] == "herald-worker"
                and s["kind"] == "CLIENT"
                and _http_url(s) == receiver.url
            ),
        }
        spans: list[dict[str, Any]] = []
        missing: list[str] = list(wanted)

        async def complete() -> bool:
            nonlocal spans, missing
            trace = load_traces(str(trace_dir)).get(trace_id)
            spans = trace.spans if trace else []
            missing = [name for name, match in wanted.items() if not any(map(match, spans))]
            return not missing

        try:
            await wait_until(
                complete, seconds=30, interval=0.2, message="the trace never completed"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; spans missing: {missing}") from None
        finally:
            await receiver.stop()
        assert len(receiver.events("post.created")) == 1

        # One trace, and every span's parent is in it (only the server span is a root).
        ids = {s["span_id"] for s in spans}
        roots = [s for s in spans if s["parent_span_id"] not in ids]
        assert [r["name"] for r in roots] == ["POST /v1/posts"]
        assert {s["service"] for s in spans} == SERVICES
        by_id = {s["span_id"]: s for s in spans}
        http_call = next(s for s in spans if wanted["webhook http"](s))
        assert by_id[http_call["parent_span_id"]]["name"] == "webhook.deliver"
        status = http_call["attributes"]
        assert status.get("http.response.status_code", status.get("http.status_code")) == 200
        worker_span = next(s for s in spans if wanted["worker"](s))
        chain = []
        current: dict[str, Any] | None = worker_span
        while current is not None:
            chain.append(current["name"])
            current = by_id.get(current["parent_span_id"])
        assert "outbox publish post.created" in chain
        assert chain[-1] == "POST /v1/posts"

        waterfall = render(load_traces(str(trace_dir))[trace_id])
        for service in SERVICES:
            assert service in waterfall
        print(waterfall)

        # Metrics moved, and parse as Prometheus text.
        metrics_url = f"{await api.metrics_url()}/metrics"
        metrics = (await http.get(metrics_url)).text
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        requests = families["herald_http_requests"]
        assert any(
            s.labels.get("route") == "/v1/posts"
            and s.labels.get("status") == "201"
            and s.value >= 1
            for s in requests.samples
        )
        get = await http.get(f"/v1/posts/{post_id}")
        assert get.status_code == 200
        after = {
            f.name: f for f in text_string_to_metric_families((await http.get(metrics_url)).text)
        }
        lookups = {s.labels["result"]: s.value for s in after["herald_cache_lookups"].samples}
        assert lookups.get("hit", 0) + lookups.get("miss", 0) >= 1
        published = {
            s.labels["outcome"]: s.value
            for s in after["herald_events_published"].samples
            if s.name.endswith("_total")
        }
        assert published.get("confirmed", 0) >= 1
        assert "herald_outbox_backlog" in after

    # Logs of all three services about this request carry its trace id; none has the key.
    for process in (api, worker, invalidator):
        lines = _log_lines(process)
        assert any(line.get("trace_id") == trace_id for line in lines), process.label
        assert key.token not in process.log_path.read_text(errors="replace"), process.label
    access = [
        line
        for line in _log_lines(api)
        if line.get("event") == "request" and line.get("trace_id") == trace_id
    ]
    assert access
    assert (access[0]["route"], access[0]["status"]) == ("/v1/posts", 201)
    assert access[0]["account_id"] == str(key.account_id)
