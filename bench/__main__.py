"""``python -m bench`` (``make bench``): run every phase, then report.

1. Create the run's own database (migrated, 1M posts seeded), Redis prefix and broker namespace.
2. HTTP: baselines, the peer stacks (P1 read, P2 write) and Herald scenarios with wrk,
   interleaved, ``--reps`` times.
3. Pipeline: Herald's API, worker and cache-invalidator under open-loop writers; commit →
   published / handled / invalidated at fixed rates, then the highest sustained rate, searched.
4. Relay: the highest event rate through the outbox relay; pipelined vs one-at-a-time confirms.
5. Workers: Herald's consumer runtime (inbox, idempotent) against Celery (solo, prefork 2),
   Dramatiq and FastStream on the same trivial task.
6. Stop every process group (and check none is left), drop the database, delete the keys and
   the namespace; write the table, ``bench/results/latest.json``, docs and plots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from types import FrameType
from typing import Any

import structlog

from bench.config import BenchConfig, parse_args
from bench.data import prepare
from bench.env import BenchEnv, private_vhost
from bench.http_load import run_http
from bench.pipeline import run_pipeline
from bench.procs import Groups
from bench.relay import publish_modes, relay_rate
from bench.report import machine_info, write_outputs
from bench.seams import AmqpSettings
from bench.workers import run_workers
from bench.wrk import require_wrk


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run(config: BenchConfig) -> dict[str, Any]:
    """Run the selected phases; returns everything measured (the JSON document)."""
    require_wrk()
    env = BenchEnv.create()
    log_dir = env.work / "logs"
    log_dir.mkdir(parents=True)
    groups = Groups(log_dir)
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine_info(), "config": config_summary(config)}
    print(f"work folder {env.work}; database {env.database}; namespace {env.namespace}")
    stack = contextlib.ExitStack()
    try:
        # The peers' brokers (P2's Celery, the peer consumers) declare names of their own: they
        # get a virtual host of the run's own, deleted with everything in it at the end.
        peer_url = stack.enter_context(private_vhost(env.amqp_url, env.namespace))
        asyncio.run(env.create_database())
        data = asyncio.run(prepare(env, posts=config.posts, pool_size=config.pool_size))
        print(f"seeded {data.posts:,} posts in {data.seed_seconds:.1f} s")
        results["seed_seconds"] = data.seed_seconds
        process_env = env.process_env()
        if config.wants("http"):
            runs, list_cache = run_http(config, groups, data, process_env, env.work, peer_url)
            results["http_runs"] = [r.as_dict() for r in runs]
            results["list_cache_implemented"] = list_cache
        if config.wants("pipeline"):
            print("pipeline: open-loop writers at fixed rates")
            rates = run_pipeline(config, groups, env, data, process_env)
            results["pipeline"] = [r.as_dict() for r in rates]
        amqp = AmqpSettings(url=env.amqp_url, namespace=env.namespace)
        if config.wants("relay"):
            print("relay: the highest event rate through the outbox relay")
            results["relay"] = relay_rate(
                env.dsn, amqp, config.count(config.relay_rows), config.reps
            )
        if config.wants("publish"):
            print("publish: pipelined confirms against one at a time")
            messages = config.count(config.publish_messages)
            results["publish"] = publish_modes(amqp, messages, config.reps)
        if config.wants("workers"):
            print("workers: Herald's consumer runtime against Celery, Dramatiq and FastStream")
            results["workers"] = run_workers(config, groups, env, process_env, peer_url)
    finally:
        leftovers = groups.stop_all()
        stack.close()
        problems = asyncio.run(env.cleanup())
        results["leftover_processes"] = leftovers
        results["leftover_resources"] = problems
        results["total_seconds"] = time.monotonic() - started
        for problem in leftovers + problems:
            print(f"LEFT BEHIND: {problem}", file=sys.stderr)
    return results


def config_summary(config: BenchConfig) -> dict[str, Any]:
    return {
        "scale": config.scale,
        "reps": config.reps,
        "only": sorted(config.only),
        "posts": config.posts,
        "api_processes": config.api_processes,
        "wrk_threads": config.wrk.threads,
        "wrk_connections": config.wrk.connections,
        "warmup_seconds": config.seconds(config.warmup_seconds),
        "measure_seconds": config.seconds(config.measure_seconds),
        "pipeline_seconds": config.seconds(config.pipeline_seconds),
        "pipeline_rates": list(config.pipeline_rates),
        "search_low": config.search_low,
        "search_high": config.search_high,
        "search_resolution": config.search_resolution,
        "worker_messages": config.count(config.worker_messages),
    }


def main() -> None:
    config = parse_args()
    # The shared library logs with structlog; the harness prints its own progress.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    signal.signal(signal.SIGTERM, _stop_on_signal)
    results = run(config)
    write_outputs(config, results)
    if results["leftover_processes"] or results["leftover_resources"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
