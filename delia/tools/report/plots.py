"""The sweep's plots: metric against the number of downstream examples or the ratio, the ablation heatmap,
loss curves and buffering-effect curves."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from delia.tools.report.jobs import (
    BUFFER_COLUMNS,
    CURVE_METRICS,
    FALLBACK_METRICS,
    KEY_METRICS,
    LOSS_COLUMNS,
    PLOT_FILES,
    Job,
    MissingData,
    Report,
)
from delia.tools.report.tables import fmt, group_jobs, mean_std


def new_figure(n_panels: int, width: float = 4.0, height: float = 3.2) -> tuple[Figure, list[Any]]:
    """A figure with ``n_panels`` axes in a row, drawn with the Agg canvas (no GUI, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def line_label(job: Job, report: Report, leave_out: Sequence[str] = ()) -> str:
    """The method, plus the values of the other swept keys (except seed and ``leave_out``); a key this job
    did not set (a reference without ``diverse.ratio``) or that only repeats the method (``method=common_it``)
    is left out."""
    extra = [k for k in report.group_keys[2:] if k not in leave_out]
    values = {k: job.swept.get(k) for k in extra}
    shown = [f"{k}={v}" for k, v in values.items() if v is not None and str(v) != job.method]
    return ", ".join([job.method, *shown])


def line_colors(labels: Iterable[str]) -> dict[str, str]:
    """The same colour for a method in every panel of a figure (matplotlib's ``C0``, ``C1``, ...)."""
    return {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}


def figure_legend(fig: Figure, axes: Sequence[Any]) -> None:
    """One legend for all panels, outside them on the right (each label once)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="small")


def plotted_metrics(report: Report) -> list[str]:
    """The paper's key metrics, the scale-free representation distance and the buffering measures that
    some finished job has; else eval/loss."""
    have = {n for job in report.finished for n, v in job.metrics.items() if math.isfinite(v)}
    wanted = [*KEY_METRICS, *CURVE_METRICS]
    return [m for m in wanted if m in have] or [m for m in FALLBACK_METRICS if m in have]


def x_value(job: Job, report: Report, key: str) -> float | None:
    """A job's value of the config field ``key`` on a plot's x axis: its override where the sweep varies
    ``key`` (None for a job that did not set it, e.g. a reference without diverse data in a ratio sweep),
    else the resolved config value."""
    value = job.swept.get(key) if key in report.swept_keys else job.config.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _draw_band(ax: Any, xs: Sequence[float], stats: Sequence[tuple[float, float]], **style: Any) -> None:
    """Means as a line, ± std (0 where there is one seed) as a band of the same colour."""
    means = [m for m, _ in stats]
    stds = [0.0 if math.isnan(sd) else sd for _, sd in stats]
    ax.plot(xs, means, **style)
    low = [m - sd for m, sd in zip(means, stds, strict=True)]
    high = [m + sd for m, sd in zip(means, stds, strict=True)]
    ax.fill_between(xs, low, high, color=style["color"], alpha=0.2, linewidth=0)


def _plot_against(report: Report, key: str, xlabel: str) -> Figure:
    """One panel per plotted metric: x = the config field ``key``, a line per method, a band of ± std over
    seeds. A method without a value of ``key`` is a dashed horizontal line at its mean (a reference)."""
    metrics = plotted_metrics(report)
    placed = [j for j in report.finished if x_value(j, report, key) is not None]
    if not metrics or not placed:
        raise MissingData(f"no finished job with {key} and a key metric")
    flat = [j for j in report.finished if x_value(j, report, key) is None]
    lines = group_jobs(placed, lambda j: (line_label(j, report, leave_out=[key]),))
    references = group_jobs(flat, lambda j: (line_label(j, report, leave_out=[key]),))
    colors = line_colors(label for (label,) in [*lines, *references])
    xs_all = sorted({x_value(j, report, key) for j in placed})
    fig, axes = new_figure(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        for (label,), members in lines.items():
            points = group_jobs(members, lambda j: (x_value(j, report, key),))
            stats = [mean_std(j.metrics.get(metric, math.nan) for j in group) for group in points.values()]
            _draw_band(ax, [x for (x,) in points], stats, marker="o", label=label, color=colors[label])
        for (label,), members in references.items():
            stat = mean_std(j.metrics.get(metric, math.nan) for j in members)
            edges = [xs_all[0], xs_all[-1]]
            _draw_band(ax, edges, [stat, stat], linestyle="--", label=label, color=colors[label])
        positive = [x for x in xs_all if x > 0]
        if len(positive) > 1 and positive[-1] / positive[0] >= 10:
            ax.set_xscale(
                "symlog" if 0 in xs_all else "log", **({"linthresh": positive[0]} if 0 in xs_all else {})
            )
        ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
        ax.set_xlabel(xlabel)
        ax.set_title(metric)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean, band ± std over seeds")
    figure_legend(fig, axes)
    return fig


def _require_varied(report: Report, key: str) -> None:
    """A plot against ``key`` needs finished jobs at two values of it at least (one value is a flat plot)."""
    if len({x_value(j, report, key) for j in report.finished} - {None}) < 2:
        raise MissingData(f"the sweep does not vary {key}")


def plot_metric_vs_train_size(report: Report) -> Figure:
    """Each metric against the number of downstream examples (the paper's Experiment 1 figure)."""
    _require_varied(report, "dataset.train_size")
    return _plot_against(report, "dataset.train_size", "dataset.train_size (downstream)")


def plot_metric_vs_ratio(report: Report) -> Figure:
    """Each metric against the diverse ratio (the paper's ratio figure)."""
    _require_varied(report, "diverse.ratio")
    return _plot_against(report, "diverse.ratio", "diverse.ratio (diverse per downstream)")


def heatmap_data(report: Report) -> tuple[str, list[str], list[str], list[list[float]]]:
    """(row label, rows, metric columns, means): ablations when the sweep varies them, else methods.

    Ablation rows use only the baselines that were run with more than one ablation (common_it
    has no ablations and would blur the ``none`` row). Bookkeeping ``train/*`` counts are left out.
    """
    jobs = report.finished
    columns = [m for m in report.metric_names if not m.startswith("train/")]
    by_baseline: dict[str, set[str]] = {}
    for job in jobs:
        by_baseline.setdefault(job.baseline, set()).add(job.ablation)
    ablated = {b for b, ablations in by_baseline.items() if len(ablations) > 1}
    if ablated:
        title = f"ablation ({', '.join(sorted(ablated))})"
        groups = group_jobs((j for j in jobs if j.baseline in ablated), lambda j: (j.ablation,))
    else:
        title = "method"
        groups = group_jobs(jobs, lambda j: (line_label(j, report),))
    rows = [str(label) for (label,) in groups]
    means = [
        [mean_std(j.metrics.get(m, math.nan) for j in members)[0] for m in columns]
        for members in groups.values()
    ]
    return title, rows, columns, means


def plot_ablation_heatmap(report: Report) -> Figure:
    """Mean of each metric per ablation (or per method); colour scaled per column, value written in."""
    title, rows, columns, means = heatmap_data(report)
    if not rows or not columns:
        raise MissingData("no finished job with an evaluation metric")
    scaled = [[math.nan] * len(columns) for _ in rows]
    for c in range(len(columns)):
        col = [means[r][c] for r in range(len(rows)) if math.isfinite(means[r][c])]
        lo, hi = (min(col), max(col)) if col else (0.0, 0.0)
        for r in range(len(rows)):
            if math.isfinite(means[r][c]):
                scaled[r][c] = (means[r][c] - lo) / (hi - lo) if hi > lo else 0.5
    fig, (ax,) = new_figure(1, width=max(5.5, 1.6 * len(columns) + 3), height=0.6 * len(rows) + 1.8)
    ax.imshow(scaled, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for r in range(len(rows)):
        for c in range(len(columns)):
            text = fmt(means[r][c]) or "n/a"
            ax.text(c, r, text, ha="center", va="center", color="white" if scaled[r][c] < 0.5 else "black")
    ax.set_ylabel(title)
    ax.set_title("mean over seeds; colour scaled per metric", fontsize="medium")
    return fig


def read_curve(csv_file: Path, column: str) -> dict[int, float]:
    """``step -> value`` for one column of a Lightning ``metrics.csv`` (first logged value per step)."""
    if not csv_file.is_file():
        return {}
    curve: dict[int, float] = {}
    with csv_file.open(newline="") as handle:
        for row in csv.DictReader(handle):
            value, step = row.get(column), row.get("step")
            if value and step:
                try:
                    curve.setdefault(int(float(step)), float(value))
                except ValueError:
                    continue
    return curve


def _plot_step_curves(columns: Sequence[str], lines: dict[tuple, list[Job]], ylabel: str) -> Figure:
    """One panel per ``columns`` entry of csv/metrics.csv against step, a line per group (mean over its jobs)."""
    colors = line_colors(label for (label,) in lines)
    curves = {
        column: {
            label: [read_curve(j.path / "csv" / "metrics.csv", column) for j in members]
            for (label,), members in lines.items()
        }
        for column in columns
    }
    if not any(c for per_label in curves.values() for runs in per_label.values() for c in runs):
        raise MissingData(f"no finished job logged {' or '.join(columns)} in csv/metrics.csv")
    fig, axes = new_figure(len(columns), width=4.5)
    for ax, column in zip(axes, columns, strict=True):
        for label, runs in curves[column].items():
            steps = sorted({s for run in runs for s in run})
            if steps:
                means = [mean_std(run[s] for run in runs if s in run)[0] for s in steps]
                ax.plot(steps, means, marker=".", label=label, color=colors[label])
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(column)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    figure_legend(fig, axes)
    return fig


def plot_loss_curves(report: Report) -> Figure:
    """train/loss_task and train/loss_diverse against step, one line per method, mean over its runs.

    A method's runs are its seeds (and, when the sweep varies other keys, all their values).
    """
    lines = group_jobs(report.finished, lambda j: (j.method,))
    return _plot_step_curves(LOSS_COLUMNS, lines, "loss, mean over seeds")


def plot_buffering_curves(report: Report) -> Figure:
    """The buffering-effect measures (callbacks=buffering) against step, one line per method and swept
    setting (a ratio sweep: one line per ratio), mean over seeds; step 0 is before any update."""
    lines = group_jobs(report.finished, lambda j: (line_label(j, report),))
    return _plot_step_curves(BUFFER_COLUMNS, lines, "mean over seeds")


PLOTS: dict[str, Callable[[Report], Figure]] = {
    "metric_vs_train_size": plot_metric_vs_train_size,
    "metric_vs_ratio": plot_metric_vs_ratio,
    "ablation_heatmap": plot_ablation_heatmap,
    "loss_curves": plot_loss_curves,
    "buffering_curves": plot_buffering_curves,
}


def write_plots(report: Report, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Save every plot that has data as PNG; the others become notes."""
    written, notes = [], []
    for name, plot in PLOTS.items():
        path = out_dir / PLOT_FILES[name]
        try:
            fig = plot(report)
        except MissingData as missing:
            notes.append(f"{path.name} skipped: {missing}")
            continue
        fig.savefig(path, dpi=120)
        written.append(path)
        notes.append(f"![{name}]({path.name})")
    return written, notes
