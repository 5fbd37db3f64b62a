"""Head sampling in a real API process: at a ratio of one half, the requests the edge admits
are traced whole (server span and the Redis call under it), the others leave no span at all and
still answer with their (unsampled) trace context."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from herald_cli.tracing import load_traces
from tests.conftest import MakeKey
from tests.support.services import Processes
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

REQUESTS = 40


async def test_admitted_requests_are_traced_whole_and_the_others_not_at_all(
    processes: Processes, make_key: MakeKey, tmp_path: Path
) -> None:
    trace_dir = tmp_path / "traces"
    env = {"HERALD_TRACE_DIR": str(trace_dir), "HERALD_TRACE_SAMPLE_RATIO": "0.5"}
    _, base_url = await processes.start_api(env)
    key = await make_key()
    async with httpx.AsyncClient(base_url=base_url, headers=key.headers) as http:
        created = await http.post("/v1/posts", json={"title": "sampled", "body": "b"})
        assert created.status_code == 201, created.text
        path = f"/v1/posts/{created.json()['id']}"
        flags: dict[str, str] = {}
        for _ in range(REQUESTS):
            response = await http.get(path)
            assert response.status_code == 200
            _, trace_id, _, flag = response.headers["traceparent"].split("-")
            flags[trace_id] = flag
    assert len(flags) == REQUESTS  # every request has a trace id of its own
    sampled = {t for t, f in flags.items() if int(f, 16) & 1}
    unsampled = set(flags) - sampled
    assert sampled  # chance of none at one half: 2**-40
    assert unsampled

    def names(trace_id: str) -> set[str]:
        trace = load_traces(str(trace_dir)).get(trace_id)
        return {s["name"] for s in trace.spans} if trace else set()

    async def all_sampled_written() -> bool:
        return all({"GET /v1/posts/{post_id}", "EVALSHA"} <= names(t) for t in sampled)

    await wait_until(all_sampled_written, seconds=20, interval=0.2, message="spans missing")
    # Written in the same batches as the sampled ones: anything of theirs would be there by now.
    written = load_traces(str(trace_dir))
    assert unsampled.isdisjoint(written)
