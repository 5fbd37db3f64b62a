"""HTTP servers under test: Herald's API (``herald-api``, exactly as deployed), the baselines
app and the peer stacks' app, each in its own process group on a free loopback port.

All count their requests in Prometheus multi-process files (one file per server process), so
the harness reads how many requests each process answered — and Herald's cache hits and
misses — without touching the application.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aio_pika
from prometheus_client.mmap_dict import MmapedDict

from bench.procs import BIN, Group, Groups
from bench.seams import queue_depth

HOST = "127.0.0.1"
READY_SECONDS = 60.0
#: A multi-process file starts with the 4-byte count of bytes used, and 4 of padding.
_HEADER_BYTES = 8


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """One request on a new connection: (status, body); (0, b"") when nothing answers."""
    status, body, _ = http_request(port, path, headers)
    return status, body


def http_request(
    port: int, path: str, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """One GET on a new connection: (status, body, lower-cased headers); 0 when no answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        answer = {name.lower(): value for name, value in response.getheaders()}
        return response.status, response.read(), answer
    except OSError:
        return 0, b"", {}
    finally:
        conn.close()


def metric_entries(path: Path) -> list[tuple[str, str, dict[str, str], float]]:
    """The (metric, sample, labels, value) entries of one Prometheus multi-process file.

    A server process creates its file empty and only then sizes it (``MmapedDict``: open,
    truncate, map), so a reader can find it at 0 bytes: that file holds no value yet. The size
    only ever grows from 0 to the whole initial map, so a file seen non-empty stays readable.
    """
    try:
        if path.stat().st_size < _HEADER_BYTES:
            return []
        raw = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        entries = []
        for key, value, _, _ in raw:
            metric, name, labels, _ = json.loads(key)
            entries.append((metric, name, labels, value))
    except OSError:  # the process's file was removed meanwhile
        return []
    return entries


def read_counters(directory: Path, sample: str) -> dict[int, dict[str, float]]:
    """Per server process (pid): the counter ``sample``'s values by label set (as JSON)."""
    values: dict[int, dict[str, float]] = defaultdict(dict)
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for _, name, labels, value in metric_entries(path):
            if name == sample:
                values[pid][json.dumps(labels, sort_keys=True)] = value
    return dict(values)


def read_histogram(directory: Path, metric: str) -> dict[float, float]:
    """The histogram ``metric``'s observations per bucket (upper bound in seconds; not
    cumulative, as multi-process files keep them), all processes and label sets together."""
    buckets: dict[float, float] = defaultdict(float)
    for path in directory.glob("histogram_*.db"):
        for _, name, labels, value in metric_entries(path):
            if name == f"{metric}_bucket":
                buckets[float(labels["le"])] += value
    return dict(buckets)


@dataclass(slots=True)
class Server:
    """A running server: its process group, port, process count and metrics folder."""

    kind: str
    group: Group
    port: int
    processes: int
    metrics_dir: Path

    @property
    def request_sample(self) -> str:
        return (
            "herald_http_requests_total" if self.kind == "herald" else "bench_http_requests_total"
        )

    def requests_per_process(self) -> dict[int, float]:
        counters = read_counters(self.metrics_dir, self.request_sample)
        return {pid: sum(by_label.values()) for pid, by_label in counters.items()}

    def cache_lookups(self) -> dict[str, float]:
        """Herald's cache lookups by result (hit, miss), all processes together."""
        totals: dict[str, float] = defaultdict(float)
        for by_label in read_counters(self.metrics_dir, "herald_cache_lookups_total").values():
            for labels, value in by_label.items():
                totals[json.loads(labels).get("result", "?")] += value
        return dict(totals)

    def wait_all_processes(self) -> None:
        """Until each server process has answered a request (uvicorn boots them one by one)."""
        deadline = time.monotonic() + READY_SECONDS
        while len([n for n in self.requests_per_process().values() if n > 0]) < self.processes:
            if time.monotonic() > deadline or not self.group.running():
                raise RuntimeError(
                    f"{self.kind}: not every process answered:\n{self.group.log_tail()}"
                )
            for _ in range(8):
                http_get(self.port, "/livez")
            time.sleep(0.05)


def start_server(
    groups: Groups,
    kind: str,
    *,
    processes: int,
    env: Mapping[str, str],
    work: Path,
    label: str,
) -> Server:
    """Start ``herald-api`` (kind ``herald``), the baselines (``baseline``) or the peer stacks
    (``peer``) and wait until every process answers. ``env`` is the run's process
    environment plus the scenario's settings."""
    port = free_port()
    metrics_dir = work / f"metrics-{label}-{port}"
    metrics_dir.mkdir(parents=True)
    server_env = {
        **env,
        "HERALD_API_HOST": HOST,
        "HERALD_API_PORT": str(port),
        # The metrics are read from the files; the endpoint takes any free port.
        "HERALD_API_METRICS_PORT": "0",
        "HERALD_API_PROCESSES": str(processes),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    module = {"baseline": "bench.baselines", "peer": "bench.peer_http"}
    if kind == "herald":
        args = [str(BIN / "herald-api")]
    else:
        args = [str(BIN / "python"), "-m", module[kind]]
    group = groups.start(label, args, server_env)
    server = Server(kind, group, port, processes, metrics_dir)
    ready_path = "/readyz" if kind == "herald" else "/livez"
    deadline = time.monotonic() + READY_SECONDS
    while http_get(port, ready_path)[0] != 200:
        if time.monotonic() > deadline or not group.running():
            groups.stop(group)
            raise RuntimeError(f"{label} did not become ready:\n{group.log_tail()}")
        time.sleep(0.1)
    server.wait_all_processes()
    return server


def start_invalidator(groups: Groups, env: Mapping[str, str], label: str) -> Group:
    """Start ``herald-cache-invalidator`` and wait until it consumes its queue: the only
    process that retires cached list pages (decision 0039)."""
    group = groups.start(label, [str(BIN / "herald-cache-invalidator")], env)
    queue = f"{env['HERALD_AMQP_NAMESPACE']}.cache-invalidator"
    try:
        asyncio.run(_wait_consumer(env["HERALD_AMQP_URL"], queue, group))
    except BaseException:
        groups.stop(group)
        raise
    return group


async def _wait_consumer(amqp_url: str, queue: str, group: Group) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            depth = await queue_depth(connection, queue)
            if depth is not None and depth.consumers > 0:
                return
            if time.monotonic() > deadline or not group.running():
                raise RuntimeError(f"{queue} has no consumer:\n{group.log_tail()}")
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
