"""PNG plots for ``docs/benchmarks/``: HTTP throughput against the baselines, the event
pipeline's latency distributions, and workers against Celery (with publish modes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.pipeline_results import QUANTILES
from bench.summary import summarize_http

_STAGE_TITLES = {
    "published": "claimed by the relay",
    "handled": "handled (worker's commit)",
    "invalidated": "cache invalidated (histogram)",
}
_BASELINE, _HERALD, _VARIANT = "#9e9e9e", "#1f77b4", "#ff7f0e"
#: The baseline each Herald cell is set against in its label.
_AGAINST = {
    "peers/p1_get_cached": "herald/get_cached",
    "peers/p2_post": "herald/post",
    "herald/get_cached": "baselines/b2",
    "herald-nocache/get_uncached": "baselines/b3",
    "herald/post": "baselines/b4",
}
#: Each Herald cell next to the baseline it is compared with.
_ORDER = [
    "baselines/b1",
    "baselines/b2",
    "peers/p1_get_cached",
    "herald/get_cached",
    "herald-1proc/get_cached",
    "herald-trace10/get_cached",
    "herald-trace100/get_cached",
    "herald/get_304",
    "herald/rate_limited",
    "baselines/b3",
    "herald-nocache/get_uncached",
    "herald/list_first",
    "herald-nocache/list_first",
    "peers/p1_list_first",
    "herald/list_under_writes",
    "herald/list_deep",
    "herald-nocache/list_deep",
    "baselines/b4",
    "peers/p2_post",
    "herald/post",
    "herald/mix",
]


def _throughput(results: dict[str, Any], path: Path) -> bool:
    summaries = summarize_http(results.get("http_runs", []))
    cells = [c for c in _ORDER if c in summaries] + sorted(set(summaries) - set(_ORDER))
    if not cells:
        return False
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(cells) + 1.6))
    for y, cell in enumerate(cells):
        s = summaries[cell]
        color = (
            _BASELINE
            if cell.startswith(("baselines/", "peers/"))
            else _HERALD
            if cell.startswith("herald/")
            else _VARIANT
        )
        ax.barh(y, s.rps.median, color=color)
        ax.errorbar(
            s.rps.median,
            y,
            xerr=[[s.rps.median - s.rps.low], [s.rps.high - s.rps.median]],
            color="black",
            capsize=3,
            linewidth=1,
        )
        label = f" {s.rps.median:,.0f}"
        if (base := summaries.get(_AGAINST.get(cell, ""))) is not None and base.rps.median:
            label += f"  ({s.rps.median / base.rps.median:.2f}x {base.cell.split('/')[0]})"
        ax.text(s.rps.high * 1.01, y, label, va="center", fontsize=8)
    ax.set_yticks(range(len(cells)), [summaries[c].title for c in cells], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("requests per second (median of repetitions; bars: min-max)")
    ax.set_xlim(0, max(summaries[c].rps.high for c in cells) * 1.18)
    ax.set_title(
        "HTTP throughput: baselines and peers (grey), Herald (blue), Herald variants (orange)"
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _pipeline(results: dict[str, Any], path: Path) -> bool:
    rows = results.get("pipeline", [])
    if not rows:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    for ax, stage in zip(axes, ("published", "handled", "invalidated"), strict=True):
        for row in sorted(rows, key=lambda r: r["rate"]):
            label = f"{row['rate']}/s" + ("" if row["sustained"] else " (not sustained)")
            if stage == "invalidated":
                inv = row.get("invalidated") or {}
                count = inv.get("count") or 0
                points = [
                    (float(k), v / count * 100)
                    for k, v in inv.get("cumulative", {}).items()
                    if count and k != "inf"
                ]
                if points:
                    ax.step(*zip(*points, strict=True), where="post", label=label, linewidth=1.5)
                continue
            values = row["stages"][stage]["quantiles"]
            ax.plot(values, QUANTILES, label=label, linewidth=1.5)
        ax.set_xscale("log")
        ax.set_title(f"commit -> {_STAGE_TITLES[stage]}")
        ax.set_xlabel("ms (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.axhline(99, color="grey", linewidth=0.8, linestyle=":")
    axes[0].set_ylabel("percentile")
    axes[0].legend(title="offered rate", fontsize=8)
    fig.suptitle("Event pipeline latency distributions (open-loop writers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _workers(results: dict[str, Any], path: Path) -> bool:
    workers = results.get("workers", {}).get("cases", {})
    publish = results.get("publish")
    if not workers and not publish:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    modes: dict[str, Any] = {}
    if publish:
        modes = {
            "one_at_a_time": {"title": "one at a time", **publish["one_at_a_time"]},
            "pipelined": {
                "title": f"pipelined ({publish['batch']} in flight)",
                **publish["pipelined"],
            },
        }
    panels = [
        (axes[0], "Worker throughput (one Redis INCR per message)", "messages per second", workers),
        (axes[1], "Publishing with confirms", "messages per second", modes),
    ]
    for ax, title, label, cases in panels:
        names = list(cases)
        for y, name in enumerate(names):
            c = cases[name]
            peer = not name.startswith("herald") and name != "pipelined"
            color = _BASELINE if peer else _HERALD
            ax.barh(y, c["median"], color=color)
            ax.errorbar(
                c["median"],
                y,
                xerr=[[c["median"] - c["low"]], [c["high"] - c["median"]]],
                color="black",
                capsize=3,
                linewidth=1,
            )
            ax.text(c["high"] * 1.01, y, f" {c['median']:,.0f}", va="center", fontsize=8)
        ax.set_yticks(range(len(names)), [cases[n]["title"] for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel(label)
        if names:
            ax.set_xlim(0, max(cases[n]["high"] for n in names) * 1.2)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_plots(results: dict[str, Any], folder: Path) -> list[Path]:
    """Write every plot there is data for; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in (
        ("throughput", _throughput),
        ("pipeline_latency", _pipeline),
        ("workers", _workers),
    ):
        path = folder / f"{name}.png"
        if plot(results, path):
            written.append(path)
    return written
