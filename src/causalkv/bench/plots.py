"""PNG plots of a report (matplotlib, the optional ``bench`` extra).

- ``<label>-timeline.png``: throughput and p50/p99 latency per interval;
- ``<label>-percentiles.png``: the latency-by-percentile curve of each
  operation on HDR's usual axis (``1 / (1 - q)``, so the tail gets room);
- ``comparison_percentiles``: several reports' curves in one figure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from causalkv.bench.histogram import Histogram
from causalkv.bench.report import OPERATIONS, histogram_of

CURVE_PERCENTILES = (
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
)  # fmt: skip


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover (depends on the install)
        raise RuntimeError(
            "plots need matplotlib: pip install 'causalkv[bench]' (or add matplotlib)"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "bench"


def curve(histogram: Histogram) -> tuple[list[float], list[float]]:
    """x = 1/(1-q) for the curve percentiles present, y = latency in ms."""
    xs, ys = [], []
    for percent in CURVE_PERCENTILES:
        if percent and histogram.total_count * (1 - percent / 100) < 1:
            break
        xs.append(1 / (1 - percent / 100))
        ys.append(histogram.percentile(max(percent, 1e-9)) / 1e6)
    return xs, ys


def _percentile_axis(axes: Any) -> None:
    axes.set_xscale("log")
    ticks = [1 / (1 - p / 100) for p in (0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999)]
    axes.set_xticks(ticks)
    axes.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99", "99.999"])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.grid(True, which="both", alpha=0.3)


def plot_report(report: dict[str, Any], directory: Path, name: str | None = None) -> list[Path]:
    """Write the timeline and percentile plots of one report; returns the paths."""
    pyplot = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    base = slug(
        name or report["label"] or f"{report['config']['protocol']}-{report['config']['workload']}"
    )
    timeline = report["timeline"]
    times = [row["t_s"] for row in timeline]
    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(9, 6), sharex=True)
    for operation in OPERATIONS:
        if not report["operations"][operation]["count"]:
            continue
        top.plot(times, [row[f"{operation}_ops_s"] for row in timeline], label=f"{operation} ops/s")
        bottom.plot(
            times, [row[f"{operation}_p50_ms"] for row in timeline], label=f"{operation} p50"
        )
        bottom.plot(
            times, [row[f"{operation}_p99_ms"] for row in timeline], "--", label=f"{operation} p99"
        )
    warmup_end = 0.0
    for axes in (top, bottom):
        axes.axvline(warmup_end, color="grey", linewidth=0.8)
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper right", fontsize="small")
    top.set_ylabel("operations/s")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("time (s; warm-up before 0)")
    top.set_title(base)
    figure.tight_layout()
    timeline_path = directory / f"{base}-timeline.png"
    figure.savefig(timeline_path, dpi=100)
    pyplot.close(figure)

    figure, axes = pyplot.subplots(figsize=(8, 5))
    for operation in OPERATIONS:
        histogram = histogram_of(report, operation)
        if histogram.total_count:
            xs, ys = curve(histogram)
            axes.plot(xs, ys, marker=".", label=operation)
    _percentile_axis(axes)
    axes.legend()
    axes.set_title(f"{base}: latency by percentile")
    figure.tight_layout()
    percentiles_path = directory / f"{base}-percentiles.png"
    figure.savefig(percentiles_path, dpi=100)
    pyplot.close(figure)
    return [timeline_path, percentiles_path]


def plot_comparison(
    curves: Sequence[tuple[str, Histogram]], path: Path, title: str, log_y: bool = True
) -> Path:
    """Several latency-by-percentile curves in one figure."""
    pyplot = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = pyplot.subplots(figsize=(9, 5.5))
    for label, histogram in curves:
        if histogram.total_count:
            xs, ys = curve(histogram)
            axes.plot(xs, ys, marker=".", label=label)
    _percentile_axis(axes)
    if log_y:
        axes.set_yscale("log")
    axes.legend(fontsize="small")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def plot_bars(
    labels: Sequence[str], values: Sequence[float], path: Path, title: str, ylabel: str
) -> Path:
    """A bar chart (throughput per system)."""
    pyplot = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = pyplot.subplots(figsize=(9, 4.5))
    bars = axes.bar(range(len(labels)), values, color="tab:blue")
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(labels, rotation=20, ha="right", fontsize="small")
    axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize="small")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def plot_grouped_bars(
    groups: Sequence[str],
    series: Sequence[str],
    values: Sequence[Sequence[float]],
    path: Path,
    title: str,
    ylabel: str,
) -> Path:
    """Bars of ``values[group][series]``, one cluster per group."""
    pyplot = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = pyplot.subplots(figsize=(10, 5))
    width = 0.8 / max(1, len(series))
    for position, name in enumerate(series):
        xs = [group + position * width for group in range(len(groups))]
        axes.bar(xs, [row[position] for row in values], width, label=name)
    axes.set_xticks([group + 0.4 - width / 2 for group in range(len(groups))])
    axes.set_xticklabels(groups, rotation=15, ha="right", fontsize="small")
    axes.set_yscale("log")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize="small")
    axes.grid(True, axis="y", which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
