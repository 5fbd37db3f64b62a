"""Where the time goes: ``python -m bench.profile CELL`` (e.g. ``herald/get_cached``,
``baselines/b2``, ``workers/herald-inbox``, ``workers/herald-idempotent``) runs that one case on
a small seeded database under py-spy and prints the functions and packages that took the CPU.

For an HTTP cell the server runs with one process under steady wrk load; for ``workers/herald-*``
the consumer drains a pre-filled queue. The raw stacks (collapsed format, loadable in
speedscope) are kept in the work folder printed at the end with ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import uuid
from collections import Counter
from pathlib import Path

from bench.data import prepare
from bench.env import BenchEnv
from bench.http_load import SCENARIOS, Context, server_configs
from bench.procs import BIN, Group, Groups
from bench.seams import AmqpSettings
from bench.servers import start_server
from bench.workers import CASES, PREFETCH, fill_herald_queue
from bench.wrk import WrkSettings, run_wrk, script_for

_PACKAGES = (
    "herald_api", "herald_shared", "fastapi", "starlette", "pydantic", "uvicorn", "httptools",
    "redis", "asyncpg", "aio_pika", "aiormq", "pamqp", "opentelemetry", "structlog", "logging",
    "prometheus_client", "anyio", "asyncio", "uvloop", "json", "uuid", "tenacity", "pybreaker",
)  # fmt: skip


def _package(frame: str) -> str:
    """The package a collapsed-stack frame ``function (path:line)`` belongs to."""
    path = frame.rsplit("(", 1)[-1]
    for name in _PACKAGES:
        if f"/{name}/" in path or f"/{name}.py" in path:
            return name
    return "python" if "/lib/python3" in path else "other"


def summarize(raw: Path, top: int = 25) -> str:
    """Self and inclusive shares per function, and inclusive shares per package."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        for package in {_package(f) for f in frames}:
            packages[package] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"\ntop {top} functions by {title} share:")
        for frame, count in counter.most_common(top):
            lines.append(f"  {count / total:6.1%}  {frame[:150]}")
    lines.append("\npackages, inclusive (a sample counts for every package on its stack):")
    for package, count in packages.most_common():
        lines.append(f"  {count / total:6.1%}  {package}")
    lines.append("\npackages, self (where the sampled frame itself was):")
    for package, count in Counter(
        {p: sum(c for f, c in own.items() if _package(f) == p) for p in set(map(_package, own))}
    ).most_common():
        lines.append(f"  {count / total:6.1%}  {package}")
    return "\n".join(lines)


def _record(pid: int, seconds: int, out: Path, subprocesses: bool) -> subprocess.Popen[bytes]:
    args = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(seconds)]
    args += ["--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"]
    args += ["--full-filenames", "--threads"]
    if subprocesses:
        args.append("--subprocesses")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603


def _profile_http(cell: str, env: BenchEnv, groups: Groups, seconds: int) -> Path:
    label, _, name = cell.partition("/")
    configs = {c.label: c for c in server_configs(1, {})}
    server_config = configs[label]
    data = asyncio.run(prepare(env, posts=100_000, pool_size=1000))
    process_env = {**env.process_env(), "BENCH_AUTHOR_ID": str(data.author_id)}
    server = start_server(
        groups,
        server_config.kind,
        processes=1,
        env={**process_env, **server_config.env},
        work=env.work,
        label=label,
    )
    scenario = SCENARIOS[name]
    ctx = Context(data, data.write_pool(env.work / "pool.txt"), uuid.uuid4().hex[:8])
    url, script = f"http://127.0.0.1:{server.port}", script_for(scenario.script, env.work)
    settings = WrkSettings(threads=1, connections=16)
    run_wrk(url, script, scenario.args(ctx), seconds=2, settings=settings)
    out = env.work / f"{label}-{name}.raw"
    recorder = _record(server.group.pgid, seconds, out, subprocesses=False)
    result = run_wrk(url, script, scenario.args(ctx), seconds=seconds + 1, settings=settings)
    recorder.wait(timeout=60)
    print(f"{cell}: {result.rps:,.0f} req/s with one process while profiled")
    return out


def _profile_worker(name: str, env: BenchEnv, groups: Groups, seconds: int) -> Path:
    asyncio.run(env.create_database())
    amqp = AmqpSettings(url=env.amqp_url, namespace=env.namespace)
    messages = 20_000
    asyncio.run(fill_herald_queue(amqp, messages))
    key = f"{env.prefix}profile"
    case = next(c for c in CASES if c.name == name and c.runtime == "herald")
    group: Group = groups.start(
        case.name,
        [str(BIN / "python"), "-m", "bench.consumer_app"],
        {
            **env.process_env(),
            "BENCH_CONSUMER": "bench-throughput",
            "BENCH_IDEMPOTENT": "1" if name == "herald-idempotent" else "0",
            "BENCH_COUNTER_KEY": key,
            "BENCH_EXPECTED": str(messages),
            "HERALD_CONSUMER_PREFETCH": str(PREFETCH),
        },
    )
    out = env.work / f"workers-{name}.raw"
    recorder = _record(group.pgid, seconds, out, subprocesses=False)
    recorder.wait(timeout=60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("cell", help="an HTTP cell (herald/get_cached) or workers/herald-inbox")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (raw stacks)")
    parser.add_argument("--top", type=int, default=40, help="functions to list")
    args = parser.parse_args()
    env = BenchEnv.create()
    (env.work / "logs").mkdir(parents=True)
    groups = Groups(env.work / "logs")
    try:
        if args.cell.startswith("workers/"):
            raw = _profile_worker(args.cell.partition("/")[2], env, groups, args.seconds)
        else:
            asyncio.run(env.create_database())
            raw = _profile_http(args.cell, env, groups, args.seconds)
        print(summarize(raw, args.top))
    finally:
        left = groups.stop_all()
        problems = asyncio.run(env.cleanup(keep_work=args.keep))
        if args.keep:
            print(f"raw stacks: {env.work}")
        for problem in left + problems:
            print(f"LEFT BEHIND: {problem}")


if __name__ == "__main__":
    main()
