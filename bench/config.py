"""The harness's knobs: durations and counts (all multiplied by one ``scale``), repetitions,
which phases and scenarios to run, and where the outputs go."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import ROOT
from bench.wrk import WrkSettings

PHASES = ("http", "pipeline", "relay", "publish", "workers")


@dataclass(frozen=True, slots=True)
class BenchConfig:
    scale: float = 1.0
    reps: int = 5
    #: Phases to run, or ``phase:scenario`` selectors (e.g. ``http:b1``); empty: everything.
    only: frozenset[str] = frozenset()
    posts: int = 1_000_000
    pool_size: int = 1000
    api_processes: int = 2
    wrk: WrkSettings = field(default_factory=WrkSettings)
    warmup_seconds: float = 2.0
    measure_seconds: float = 5.0
    #: Wait before each measured run until the machine uses less than this share of its CPUs.
    quiet_share: float = 0.25
    quiet_wait_seconds: float = 10.0
    #: Discard a run where one API process served less than this share of the requests.
    min_process_share: float = 0.35
    #: Fixed rates of the latency targets, run first (writes per second).
    pipeline_rates: tuple[int, ...] = (200, 500)
    pipeline_seconds: float = 10.0
    #: How long after the last write every event must be handled and invalidated.
    pipeline_drain_seconds: float = 10.0
    #: The search for the highest sustained rate: bounds, resolution, at most this many probes.
    search_low: int = 100
    search_high: int = 2000
    search_resolution: float = 0.1
    search_probes: int = 6
    #: The list-page case: writes per second while the first page is read.
    list_writes_per_second: float = 10.0
    relay_rows: int = 20_000
    publish_messages: int = 5_000
    worker_messages: int = 10_000
    results: Path = ROOT / "bench" / "results" / "latest.json"
    docs: Path = ROOT / "docs" / "benchmarks.md"
    plots: Path = ROOT / "docs" / "benchmarks"

    def seconds(self, base: float) -> float:
        return max(1.0, base * self.scale)

    def count(self, base: int, minimum: int = 50) -> int:
        return max(minimum, round(base * self.scale))

    def wants(self, phase: str, scenario: str | None = None, *, cell: str | None = None) -> bool:
        """Whether ``phase`` (and, given, its ``scenario`` or HTTP ``cell``) was selected:
        ``http`` selects the phase, ``http:get_cached`` the scenario in every server
        configuration, ``http:peers`` every scenario of one configuration,
        ``http:herald/get_cached`` one cell."""
        if not self.only or phase in self.only:
            return True
        prefixed = {s for s in self.only if s.startswith(f"{phase}:")}
        if scenario is None:
            return bool(prefixed)
        label = cell.partition("/")[0] if cell else None
        return bool({f"{phase}:{scenario}", f"{phase}:{cell}", f"{phase}:{label}"} & prefixed)


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Herald's hot paths against bare baselines and peer stacks.",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every duration and message count (0.05 for a smoke run)",
    )
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each A/B case")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated phases ({', '.join(PHASES)}) or phase:scenario selectors",
    )
    parser.add_argument("--posts", type=int, default=1_000_000, help="posts to seed")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--api-processes", type=int, default=2, help="server processes of every HTTP stack"
    )
    parser.add_argument(
        "--pipeline-rates",
        default="200,500",
        help="fixed pipeline rates (writes/s), comma-separated",
    )
    parser.add_argument(
        "--search",
        default="100:2000",
        help="LOW:HIGH writes/s between which the highest sustained rate is searched",
    )
    parser.add_argument(
        "--search-probes", type=int, default=6, help="at most this many search probes"
    )
    parser.add_argument("--out", type=Path, help="write results, docs and plots under this folder")
    args = parser.parse_args(argv)
    low, _, high = args.search.partition(":")
    config = BenchConfig(
        scale=args.scale,
        reps=args.reps,
        only=frozenset(s.strip() for s in args.only.split(",") if s.strip()),
        posts=args.posts,
        pool_size=min(1000, max(10, args.posts // 2)),
        wrk=WrkSettings(connections=args.connections),
        api_processes=args.api_processes,
        pipeline_rates=tuple(int(r) for r in args.pipeline_rates.split(",") if r.strip()),
        search_low=int(low),
        search_high=int(high),
        search_probes=args.search_probes,
    )
    if args.out is not None:
        out: Path = args.out
        config = dataclasses.replace(
            config,
            results=out / "latest.json",
            docs=out / "benchmarks.md",
            plots=out / "benchmarks",
        )
    unknown = {s.split(":")[0] for s in config.only} - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    return config
