"""The HTTP phase: server configurations, their scenarios, and the interleaved measurement loop.

Each repetition starts every server configuration in turn (baselines, the peer stacks, Herald,
Herald without cache, one process, tracing 10 % and 100 %), so any two cases compared ran
A B A B A B. Per scenario: a probe request checks the expected status, a warm-up run is
discarded, then the measured run; a run where one server process answered less than
``min_process_share`` of the requests is discarded and tried again (at most twice). wrk's own
CPU is recorded with every run (it shares the machine's cores with the server), and so is the
open-loop writer's where a scenario writes while it reads.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.background_writes import BackgroundWriter, NoWrites
from bench.config import BenchConfig
from bench.data import BenchData
from bench.env import purge_queues
from bench.procs import Groups, machine_busy, stolen_ticks, wait_quiet
from bench.servers import Server, http_get, http_request, start_invalidator, start_server
from bench.wrk import WrkResult, run_wrk, script_for

POST_BODY = json.dumps(
    {
        "title": "Benchmark post",
        "body": "Written by the benchmark, a few words long.",
        "tags": ["bench"],
        "status": "published",
    }
)
LIST_PATH = "/v1/posts?status=published&limit=20"
P1_LIST_PATH = "/p1/posts?status=published&limit=20"


@dataclass(frozen=True, slots=True)
class Context:
    data: BenchData
    pool_file: Path
    nonce: str


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    script: str
    #: wrk script arguments for a context.
    args: Callable[[Context], list[str]]
    #: (path, token) of a GET that must answer ``expect`` before measuring; None: no probe.
    probe: Callable[[Context], tuple[str, str | None, str | None]] | None
    expect: int = 200
    #: Posts written per second (open loop, by the harness) while wrk reads; 0: none.
    writes_per_second: float = 0.0


def _get(prefix: str, auth: str, etag: bool = False) -> Callable[[Context], list[str]]:
    def args(ctx: Context) -> list[str]:
        token = {"reader": ctx.data.reader_token, "limited": ctx.data.limited_token}.get(auth, "-")
        return [str(ctx.pool_file), prefix, "", token, "etag" if etag else "-"]

    return args


def _probe_get(
    prefix: str, auth: str | None, etag: bool = False
) -> Callable[[Context], tuple[str, str | None, str | None]]:
    def probe(ctx: Context) -> tuple[str, str | None, str | None]:
        post_id, tag = ctx.data.pool[0]
        token = {"reader": ctx.data.reader_token, "limited": ctx.data.limited_token}.get(auth or "")
        return f"{prefix}{post_id}", token, tag if etag else None

    return probe


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("b1", "B1 bare FastAPI, small JSON", "path", lambda c: ["/b1", "-"],
                 lambda c: ("/b1", None, None)),
        Scenario("b2", "B2 bare, one Redis GET", "get", _get("/b2/", "-"),
                 _probe_get("/b2/", None)),
        Scenario("b3", "B3 bare, one asyncpg PK fetch", "get", _get("/b3/", "-"),
                 _probe_get("/b3/", None)),
        Scenario("b4", "B4 bare, one INSERT", "post", lambda c: ["/b4", "-", c.nonce, "{}"], None),
        Scenario("get_cached", "GET post, cached", "get", _get("/v1/posts/", "reader"),
                 _probe_get("/v1/posts/", "reader")),
        Scenario("get_uncached", "GET post, cache off", "get", _get("/v1/posts/", "reader"),
                 _probe_get("/v1/posts/", "reader")),
        Scenario("get_304", "GET post, If-None-Match -> 304", "get",
                 _get("/v1/posts/", "reader", etag=True),
                 _probe_get("/v1/posts/", "reader", etag=True), expect=304),
        Scenario("list_first", "list, first page (status filter)", "path",
                 lambda c: [LIST_PATH, c.data.reader_token],
                 lambda c: (LIST_PATH, c.data.reader_token, None)),
        Scenario("list_deep", "list, deep keyset page", "path",
                 lambda c: [f"{LIST_PATH}&cursor={c.data.deep_cursor}", c.data.reader_token],
                 lambda c: (f"{LIST_PATH}&cursor={c.data.deep_cursor}", c.data.reader_token, None)),
        Scenario("post", "POST post (outbox, Idempotency-Key)", "post",
                 lambda c: ["/v1/posts", c.data.writer_tokens[0], c.nonce, POST_BODY], None),
        Scenario("mix", "90/10 read/write mix", "mix",
                 lambda c: [str(c.pool_file), c.data.writer_tokens[0], c.nonce, POST_BODY, "10"],
                 None),
        Scenario("rate_limited", "GET over the rate limit -> 429", "get",
                 _get("/v1/posts/", "limited"), _probe_get("/v1/posts/", "limited"), expect=429),
        Scenario("list_under_writes", "list, first page, while 10 posts/s are written", "path",
                 lambda c: [LIST_PATH, c.data.reader_token],
                 lambda c: (LIST_PATH, c.data.reader_token, None), writes_per_second=10.0),
        Scenario("p1_get_cached", "P1 GET post, cached (FastAPI, SQLAlchemy, slowapi, "
                 "fastapi-cache2)", "get", _get("/p1/posts/", "reader"),
                 _probe_get("/p1/posts/", "reader")),
        Scenario("p1_list_first", "P1 list, first page, cached", "path",
                 lambda c: [P1_LIST_PATH, c.data.reader_token],
                 lambda c: (P1_LIST_PATH, c.data.reader_token, None)),
        Scenario("p2_post", "P2 POST post (SQLAlchemy insert, then Celery send_task)", "post",
                 lambda c: ["/p2/posts", c.data.writer_tokens[0], c.nonce, POST_BODY], None),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ServerConfig:
    label: str
    kind: str
    processes: int
    env: dict[str, str]
    scenarios: tuple[str, ...]


def server_configs(processes: int, peer_env: dict[str, str]) -> list[ServerConfig]:
    """The configurations of one repetition, in the order they run. ``peer_env`` tells P2
    where its Celery broker is."""
    # A tiny global read budget prices the 429; the benchmark's reader has its own large one.
    herald = {"HERALD_RATE_LIMIT_READ_PER_WINDOW": "1"}
    trace = {**herald, "HERALD_TRACE_ENABLED": "true"}
    return [
        ServerConfig("baselines", "baseline", processes, {}, ("b1", "b2", "b3", "b4")),
        ServerConfig(
            "peers", "peer", processes, peer_env, ("p1_get_cached", "p1_list_first", "p2_post")
        ),
        ServerConfig(
            "herald",
            "herald",
            processes,
            herald,
            (
                "get_cached",
                "get_304",
                "list_first",
                "list_deep",
                "list_under_writes",
                "post",
                "mix",
                "rate_limited",
            ),
        ),
        ServerConfig(
            "herald-nocache",
            "herald",
            processes,
            {**herald, "HERALD_CACHE_ENABLED": "false"},
            ("get_uncached", "list_first", "list_deep"),
        ),
        ServerConfig("herald-1proc", "herald", 1, herald, ("get_cached",)),
        ServerConfig(
            "herald-trace10",
            "herald",
            processes,
            {**trace, "HERALD_TRACE_SAMPLE_RATIO": "0.1"},
            ("get_cached",),
        ),
        ServerConfig(
            "herald-trace100",
            "herald",
            processes,
            {**trace, "HERALD_TRACE_SAMPLE_RATIO": "1.0"},
            ("get_cached",),
        ),
    ]


@dataclass(slots=True)
class HttpRun:
    cell: str
    rep: int
    attempt: int
    result: WrkResult
    #: Share of the requests each server process answered.
    process_shares: list[float]
    spread_ok: bool
    server_cpu_us_per_request: float
    #: Share of all CPUs busy just before the run (noise from outside the benchmark).
    busy_before: float
    #: Share of all CPUs busy during the run (server, wrk, databases, anything else).
    busy_during: float
    #: Share of CPU time the hypervisor gave to other machines during the run.
    stolen: float
    cache: dict[str, float] = field(default_factory=dict)
    #: CPU of the load generators during the measured run, in cores: wrk, and the open-loop
    #: writer of a scenario that writes while it reads (0 otherwise).
    wrk_cores: float = 0.0
    writer_cores: float = 0.0
    #: Posts the writer created during the measured run.
    writes: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rps"] = self.result.rps
        return data


def _probe(server: Server, scenario: Scenario, ctx: Context) -> None:
    if scenario.probe is None:
        return
    path, token, etag = scenario.probe(ctx)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if etag:
        headers["If-None-Match"] = etag
    status, body = http_get(server.port, path, headers)
    if status != scenario.expect and scenario.expect == 429:
        status, body = http_get(server.port, path, headers)  # the first may be within budget
    if status != scenario.expect:
        raise RuntimeError(
            f"{scenario.name}: probe {path} answered {status}, not {scenario.expect}: "
            f"{body[:300]!r}"
        )


def _prewarm(server: Server, ctx: Context, prefix: str) -> None:
    """Read every pooled post once, so the cached scenarios measure hits, not fills."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    headers = {"Authorization": f"Bearer {ctx.data.reader_token}"}
    try:
        for post_id, _ in ctx.data.pool:
            conn.request("GET", f"{prefix}{post_id}", headers=headers)
            conn.getresponse().read()
    finally:
        conn.close()


def _measure(
    server: Server, scenario: Scenario, ctx: Context, config: BenchConfig, cell: str, rep: int
) -> list[HttpRun]:
    url = f"http://127.0.0.1:{server.port}"
    script = script_for(scenario.script, ctx.pool_file.parent)
    args = scenario.args(ctx)
    warmup = config.seconds(config.warmup_seconds)
    with _writes(server, scenario, ctx, warmup, f"{cell}-{rep}-warm"):
        run_wrk(url, script, args, seconds=warmup, settings=config.wrk)
    runs: list[HttpRun] = []
    measure = config.seconds(config.measure_seconds)
    for attempt in range(3):
        busy_before = wait_quiet(config.quiet_share, config.quiet_wait_seconds * config.scale)
        writer = _writes(server, scenario, ctx, measure, f"{cell}-{rep}-{attempt}")
        counts0, cache0 = server.requests_per_process(), server.cache_lookups()
        pids = server.group.members()
        cpu0, (b0, t0), s0 = server.group.cpu_seconds(), machine_busy(), stolen_ticks()
        with writer:
            result = run_wrk(url, script, args, seconds=measure, settings=config.wrk)
        cpu1, (b1, t1), s1 = server.group.cpu_seconds(), machine_busy(), stolen_ticks()
        counts1, cache1 = server.requests_per_process(), server.cache_lookups()
        # Only processes that ever answered (the supervisor may own an empty counter file).
        served = [n - counts0.get(p, 0) for p, n in counts1.items() if n > 0]
        served += [0.0] * (server.processes - len(served))
        total = sum(served) or 1.0
        shares = sorted((n / total for n in served), reverse=True)
        ok = server.processes == 1 or min(shares) >= config.min_process_share
        run = HttpRun(
            cell=cell,
            rep=rep,
            attempt=attempt,
            result=result,
            process_shares=[round(s, 3) for s in shares],
            spread_ok=ok,
            server_cpu_us_per_request=(cpu1 - cpu0) / max(result.requests, 1) * 1e6,
            busy_before=round(busy_before, 3),
            busy_during=round((b1 - b0) / max(t1 - t0, 1), 3),
            stolen=round((s1 - s0) / max(t1 - t0, 1), 3),
            cache={k: cache1.get(k, 0) - cache0.get(k, 0) for k in cache1},
            wrk_cores=round(result.wrk_cpu_seconds / max(result.seconds, 1e-9), 3),
        )
        if writer.active:
            run.writer_cores = round(writer.cpu_seconds / max(result.seconds, 1e-9), 3)
            run.writes = len(writer.result.created_ids) if writer.result else 0
        runs.append(run)
        _print_run(run, len(pids))
        if ok:
            break
    return runs


def _writes(
    server: Server, scenario: Scenario, ctx: Context, seconds: float, nonce: str
) -> BackgroundWriter | NoWrites:
    """The writer a scenario runs alongside wrk (for ``seconds``), or none."""
    if not scenario.writes_per_second:
        return NoWrites()
    # Another account than the reader's: a writer's own list reads skip pages cached before its
    # write (read-your-writes), and the case measures what the other readers get.
    token = ctx.data.writer_tokens[0]
    return BackgroundWriter(server.port, token, scenario.writes_per_second, seconds, nonce)


def _print_run(run: HttpRun, members: int) -> None:
    r = run.result
    errors = r.status_errors + r.socket_errors
    flag = "" if run.spread_ok else "  DISCARDED (uneven spread)"
    print(
        f"  rep {run.rep + 1} {run.cell:<32} {r.rps:9,.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
        f"p99 {r.p99_ms:6.2f} ms  errors {errors:<6} shares {run.process_shares}  "
        f"cpu {run.server_cpu_us_per_request:5.0f} us/req  wrk {run.wrk_cores:.2f} cores  "
        f"busy before {run.busy_before:.0%}"
        f"  stolen {run.stolen:.1%}"
        f"{flag}",
        flush=True,
    )


def list_page_cached(server: Server, token: str) -> bool:
    """Whether the API answers the first list page from its cache (``X-Cache: hit``)."""
    headers = {"Authorization": f"Bearer {token}"}
    answers = [http_request(server.port, LIST_PATH, headers) for _ in range(2)]
    return any(h.get("x-cache") == "hit" for _, _, h in answers)


def run_http(
    config: BenchConfig,
    groups: Groups,
    data: BenchData,
    env: dict[str, str],
    work: Path,
    peer_broker: str,
) -> tuple[list[HttpRun], bool]:
    """Every selected HTTP scenario, ``config.reps`` times, configurations interleaved.
    ``peer_broker`` is the AMQP URL of the virtual host P2's Celery publishes into.

    Also returns whether the API caches first list pages (asked right after measuring them).
    """
    ctx = Context(data, data.write_pool(work / "pool.txt"), uuid.uuid4().hex[:10])
    env = {**env, "BENCH_AUTHOR_ID": str(data.author_id)}
    p2_queue = f"{env['HERALD_AMQP_NAMESPACE']}.p2"
    peer_env = {"BENCH_P2_QUEUE": p2_queue, "BENCH_P2_BROKER": peer_broker}
    configs = [
        (c, [s for s in c.scenarios if config.wants("http", s, cell=f"{c.label}/{s}")])
        for c in server_configs(config.api_processes, peer_env)
    ]
    runs: list[HttpRun] = []
    list_cache = False
    for rep in range(config.reps):
        for server_config, scenarios in configs:
            if not scenarios:
                continue
            started = time.monotonic()
            server = start_server(
                groups,
                server_config.kind,
                processes=server_config.processes,
                env={**env, **server_config.env},
                work=work,
                label=f"{server_config.label}-r{rep + 1}",
            )
            print(f"rep {rep + 1}: {server_config.label} up in {time.monotonic() - started:.1f} s")
            try:
                if server_config.kind == "herald":
                    _prewarm(server, ctx, "/v1/posts/")
                elif server_config.kind == "peer":
                    _prewarm(server, ctx, "/p1/posts/")
                for name in scenarios:
                    scenario = SCENARIOS[name]
                    _probe(server, scenario, ctx)
                    cell = f"{server_config.label}/{name}"
                    # Post events retire cached list pages in the cache-invalidator alone.
                    invalidator = (
                        start_invalidator(groups, env, f"{server_config.label}-inv-r{rep + 1}")
                        if scenario.writes_per_second
                        else None
                    )
                    try:
                        runs += _measure(server, scenario, ctx, config, cell, rep)
                    finally:
                        if invalidator is not None:
                            groups.stop(invalidator)
                    if cell == "herald/list_first":
                        list_cache = list_cache or list_page_cached(server, data.reader_token)
            finally:
                groups.stop(server.group)
                if server_config.kind == "peer":
                    # Nobody consumes P2's tasks: drop them before they weigh on the broker.
                    asyncio.run(purge_queues(peer_broker, [p2_queue]))
    return runs, list_cache
