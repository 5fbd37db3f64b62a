"""The outputs: a table on the terminal, ``bench/results/latest.json`` and the generated part of
``docs/benchmarks.md`` (between its ``bench:begin``/``bench:end`` markers; the rest of that
page — method notes, profiling findings — is written by people and kept), plus the plots."""

from __future__ import annotations

import json
import math
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.pipeline_results import highest_sustained
from bench.plots import write_plots
from bench.procs import ROOT
from bench.summary import summarize_http
from bench.targets import evaluate

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
_SKELETON = f"""# Benchmarks

Run with `make bench`; see `bench/__main__.py` for what each phase measures.

{BEGIN}
{END}
"""


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, load average and date at the start of the run."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?"
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": _revision(),
    }


def _revision() -> str:
    """The commit measured, marked ``+changes`` when the work tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _http_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for s in summarize_http(results.get("http_runs", [])).values():
        hit = "-" if s.cache_hit_ratio is None else f"{s.cache_hit_ratio:.0%}"
        rows.append(
            [
                f"`{s.cell}`",
                s.title,
                f"**{_fmt(s.rps.median)}**",
                f"{_fmt(s.rps.low)}-{_fmt(s.rps.high)}",
                _fmt(s.p50_ms.median, 2),
                _fmt(s.p99_ms.median, 2),
                _fmt(s.cpu_us_per_request),
                _fmt(s.wrk_cores + s.writer_cores, 2),
                hit,
                f"{s.kept}/{s.kept + s.discarded}",
                _fmt(s.min_process_share, 2),
                f"{s.max_busy_before:.0%} / {s.max_stolen:.1%}",
                str(s.errors),
            ]
        )
    return rows


def _lat(stage: dict[str, Any]) -> str:
    return " / ".join(_fmt(stage[k], 1) for k in ("p50", "p95", "p99", "max"))


def _bounds(inv: dict[str, Any] | None) -> str:
    if not inv:
        return "-"
    return " / ".join(
        f"<= {_fmt(inv[k], 1)}" for k in ("p50_at_most", "p95_at_most", "p99_at_most")
    )


def _pipeline_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in results.get("pipeline", []):
        stages = r["stages"]
        inv = r.get("invalidated") or {}
        lost = stages["published"]["lost"] + stages["handled"]["lost"] + inv.get("lost", 0)
        rows.append(
            [
                f"{r['rate']}/s ({r['purpose']})",
                _fmt(r["achieved_rate"]),
                "yes" if r["sustained"] else "**no**",
                _lat(stages["published"]),
                _lat(stages["handled"]),
                _lat(stages["enriched_claimed"]),
                _bounds(inv),
                f"{inv.get('count', 0):,}/{inv.get('expected', 0):,}",
                str(lost),
                str(r.get("abandoned", 0) + r["http_errors"]),
                _fmt(r["http_latency_ms"]["p99"], 1),
            ]
        )
    return rows


def _pipeline_cpu_rows(results: dict[str, Any]) -> list[list[str]]:
    names = ["api", "worker", "invalidator", "postgres", "rabbitmq", "redis", "writer"]
    rows = []
    for r in results.get("pipeline", []):
        cpu = r["cpu_share"]
        per_post = 1e6 / max(r["achieved_rate"], 1e-9)
        rows.append(
            [f"{r['rate']}/s", _fmt(r["achieved_rate"])]
            + [f"{_fmt(cpu.get(n, math.nan), 2)} ({_fmt(cpu.get(n, math.nan) * per_post)})"
               for n in names]
            + [_fmt(cpu.get("machine", math.nan), 2)]
        )  # fmt: skip
    return rows


def _pipeline_section(results: dict[str, Any]) -> list[str]:
    rows = results.get("pipeline", [])
    if not rows:
        return []
    out = [
        "",
        "### Event pipeline (Herald's API, worker and cache-invalidator; open-loop writers)",
        "",
        "ms from the API's commit (the event's `occurred_at`, stamped just before it). published = "
        "claimed by the relay (`outbox.published_at`); handled = the worker's transaction that "
        "enriched the post commits (a deferred trigger's time, just before the commit record's "
        "flush); post.enriched claimed = the relay's claim of the event the worker emitted, "
        "after its commit (an upper bound of handled); invalidated = the invalidator's "
        "histogram, bucket bounds over 2 invalidations per post (`post.created` and "
        "`post.enriched`).",
        "",
    ]
    out += _table(
        [
            "offered",
            "achieved/s",
            "sustained",
            "published p50/p95/p99/max",
            "handled p50/p95/p99/max",
            "post.enriched claimed p50/p95/p99/max",
            "invalidated p50/p95/p99",
            "invalidations",
            "lost",
            "failed or abandoned writes",
            "POST p99 ms",
        ],
        _pipeline_rows(results),
    )
    best = highest_sustained(rows)
    out += [
        "",
        f"Highest sustained rate found: **{f'{best}/s' if best else 'none'}** (search between "
        f"{results['config'].get('search_low', '?')}/s and "
        f"{results['config'].get('search_high', '?')}/s). CPU while writing, in cores and, in "
        "brackets, µs per created post (`writer` is the load generator, the harness's process; "
        "RabbitMQ and Redis are the shared servers, other people's work included; `machine` is "
        "all of it):",
        "",
    ]
    out += _table(
        ["offered", "achieved/s", "api", "worker", "invalidator", "postgres", "rabbitmq",
         "redis", "writer", "machine"],
        _pipeline_cpu_rows(results),
    )  # fmt: skip
    return out


def render(results: dict[str, Any]) -> str:
    """The generated markdown: machine, every table, the targets."""
    m = results["machine"]
    out = [
        f"Latest run: {m['date']} of revision `{m.get('revision', '?')}` on {m['nproc']} CPUs "
        f"({m['cpu_model']}), load average at "
        f"start {' / '.join(str(v) for v in m['load_average_at_start'])}; `make bench` took "
        f"{results.get('total_seconds', 0) / 60:.1f} min. Settings: {results['config']}.",
        "",
        "### Targets",
        "",
    ]
    verdicts = results.get("targets", [])
    out += _table(
        ["target", "measured", "verdict"],
        [[v["target"], v["measured"], f"**{v['status']}**"] for v in verdicts],
    )
    out += ["", "### HTTP (wrk, closed loop)", ""]
    out += _table(
        [
            "cell",
            "what",
            "req/s median",
            "min-max",
            "p50 ms",
            "p99 ms",
            "server CPU us/req",
            "load generator CPU (cores)",
            "cache hits",
            "runs kept",
            "min process share",
            "busy before / stolen (max)",
            "errors",
        ],
        _http_rows(results),
    )
    out += _pipeline_section(results)
    out += _other_sections(results)
    if results.get("leftover_processes") or results.get("leftover_resources"):
        out += ["", f"**Left behind:** {results['leftover_processes']} "
                f"{results['leftover_resources']}"]  # fmt: skip
    else:
        out += ["", "Nothing was left behind (process groups, database, keys, queues checked)."]
    return "\n".join(out)


def _other_sections(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if relay := results.get("relay"):
        e = relay["events_per_second"]
        out += [
            "",
            "### Outbox relay",
            "",
            f"Highest rate through `OutboxRelay` ({relay['rows']:,} committed rows): "
            f"**{_fmt(e['median'])}** events/s (min-max {_fmt(e['low'])}-{_fmt(e['high'])}).",
        ]
    if publish := results.get("publish"):
        one, many = publish["one_at_a_time"], publish["pipelined"]
        out += [
            "",
            f"Publishing {publish['messages']:,} messages with confirms: one at a time "
            f"**{_fmt(one['median'])}**/s ({_fmt(one['low'])}-{_fmt(one['high'])}), pipelined "
            f"{publish['batch']} in flight **{_fmt(many['median'])}**/s "
            f"({_fmt(many['low'])}-{_fmt(many['high'])}).",
        ]
    if workers := results.get("workers"):
        out += [
            "",
            f"### Workers ({workers['messages']:,} trivial messages, one Redis INCR each; "
            f"prefetch {workers['prefetch']}, concurrency {workers.get('concurrency', '-')})",
            "",
        ]
        out += _table(
            ["case", "messages/s median", "min-max", "CPU cores in the median run"],
            [
                [
                    c["title"],
                    f"**{_fmt(c['median'])}**",
                    f"{_fmt(c['low'])}-{_fmt(c['high'])}",
                    _median_run_cpu(c),
                ]
                for c in workers["cases"].values()
            ],
        )
    return out


def _median_run_cpu(case: dict[str, Any]) -> str:
    runs, cores = case.get("runs", []), case.get("cpu_cores", [])
    if not runs or len(cores) != len(runs):
        return "-"
    median_run = sorted(range(len(runs)), key=lambda i: runs[i])[len(runs) // 2]
    return ", ".join(f"{k} {v}" for k, v in cores[median_run].items())


def print_table(results: dict[str, Any]) -> None:
    print()
    print(render(results))
    print()


def write_outputs(config: BenchConfig, results: dict[str, Any]) -> None:
    """Evaluate the targets, then write the JSON, the docs page, the plots and the table."""
    results["http_summary"] = {
        cell: s.as_dict() for cell, s in summarize_http(results.get("http_runs", [])).items()
    }
    results["targets"] = [v.as_dict() for v in evaluate(results)]
    config.results.parent.mkdir(parents=True, exist_ok=True)
    config.results.write_text(json.dumps(results, indent=1, default=str) + "\n")
    plots = write_plots(results, config.plots)
    page = config.docs.read_text() if config.docs.exists() else _SKELETON
    if BEGIN not in page or END not in page:
        page = page.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    images = "\n".join(f"![{p.stem}]({os.path.relpath(p, config.docs.parent)})" for p in plots)
    generated = f"{BEGIN}\n{render(results)}\n\n{images}\n{END}"
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    config.docs.parent.mkdir(parents=True, exist_ok=True)
    config.docs.write_text(head + generated + tail)
    print_table(results)
    print(f"results: {config.results}\ndocs: {config.docs}\nplots: {[str(p) for p in plots]}")
