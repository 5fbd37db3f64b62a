"""CPU per request with the server and the load generator taken out:
``python -m bench.inprocess CASE`` calls the ASGI app directly, one request after another, on a
small seeded database of its own, and prints the CPU time per request (``time.process_time``,
best of several rounds). Steadier than wrk on a shared 2-core machine, so small differences
(one dependency level, one middleware) show; with ``--profile`` it prints a cProfile of the
same requests.

Cases: ``herald/get_cached``, ``herald/get_uncached`` (cache off), ``herald/post`` (with an
Idempotency-Key), ``herald/livez`` (the middleware stack and nothing else), ``baselines/b2``,
``baselines/b3``. ``--trace RATIO`` turns tracing on at that sampling ratio. It runs on the
default event loop, not uvloop: compare cases with each other, not with wrk's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.data import BenchData, prepare
from bench.env import BenchEnv
from bench.seams import create_api_app

CASES = (
    "herald/get_cached",
    "herald/get_uncached",
    "herald/post",
    "herald/livez",
    "baselines/b2",
    "baselines/b3",
)
_POST_BODY = b'{"title": "bench post", "body": "a post body", "status": "published", "tags": ["b"]}'

Request = Callable[[int], Awaitable[int]]


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }


def _requester(app: Any, state: dict[str, Any], case: str, data: BenchData) -> Request:
    """One request of ``case`` (the i-th of the run); returns its status."""
    auth = (b"authorization", f"Bearer {data.reader_token}".encode())

    async def request(i: int) -> int:
        post_id = data.pool[i % len(data.pool)][0]
        body = b""
        if case == "herald/post":
            body = _POST_BODY
            headers = [
                auth,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"idempotency-key", uuid.uuid4().hex.encode()),
            ]
            scope = _scope("POST", "/v1/posts", headers)
        elif case == "herald/livez":
            scope = _scope("GET", "/livez", [])
        elif case.startswith("baselines/"):
            scope = _scope("GET", f"/{case.split('/')[1]}/{post_id}", [])
        else:
            scope = _scope("GET", f"/v1/posts/{post_id}", [auth])
        scope["state"] = dict(state)
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    return request


def _app(case: str, trace: float | None) -> Any:
    os.environ["HERALD_RELAY_ENABLED"] = "false"
    os.environ["HERALD_RATE_LIMIT_READ_PER_WINDOW"] = "1"  # the reader has its own, large budget
    if case == "herald/get_uncached":
        os.environ["HERALD_CACHE_ENABLED"] = "false"
    if trace is not None:
        os.environ["HERALD_TRACE_ENABLED"] = "true"
        os.environ["HERALD_TRACE_SAMPLE_RATIO"] = str(trace)
    if case.startswith("baselines/"):
        from bench.baselines import create_app

        return create_app()
    return create_api_app()


async def measure(
    case: str, *, requests: int, rounds: int, trace: float | None, profile: bool
) -> float:
    """CPU microseconds per request, best of ``rounds``; prints a profile when asked."""
    env = BenchEnv.create()
    await env.create_database()
    try:
        data = await prepare(env, posts=2_000, pool_size=200)
        os.environ.update(env.process_env())
        os.environ["BENCH_AUTHOR_ID"] = str(data.author_id)
        app = _app(case, trace)
        async with app.router.lifespan_context(app) as state:
            request = _requester(app, dict(state or {}), case, data)
            for i in range(2 * len(data.pool)):  # warm: connections, caches, statements
                status = await request(i)
            if status >= 400:
                raise SystemExit(f"{case} answers {status}")
            best = float("inf")
            for _ in range(rounds):
                started = time.process_time()
                for i in range(requests):
                    await request(i)
                best = min(best, time.process_time() - started)
            if profile:
                profiler = cProfile.Profile()
                profiler.enable()
                for i in range(requests):
                    await request(i)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        return best / requests * 1e6
    finally:
        problems = await env.cleanup()
        for problem in problems:
            print(f"LEFT BEHIND: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("case", choices=CASES)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trace", type=float, default=None, help="tracing on at this ratio")
    parser.add_argument("--profile", action="store_true", help="print a cProfile as well")
    args = parser.parse_args()
    cpu = asyncio.run(
        measure(
            args.case,
            requests=args.requests,
            rounds=args.rounds,
            trace=args.trace,
            profile=args.profile,
        )
    )
    trace = "" if args.trace is None else f" (tracing {args.trace:g})"
    print(f"{args.case}{trace}: {cpu:,.0f} us CPU per request (best of {args.rounds})")


if __name__ == "__main__":
    main()
