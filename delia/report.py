"""``delia-report SWEEP_DIR``: one table and a few plots for every job of a Hydra multirun sweep.

A sweep dir (``outputs/multirun/<date>/<time>/``) holds one numbered dir per job (``0/``, ``1/``, ...).
Each job is read from its ``.hydra/overrides.yaml``, resolved ``config.yaml``, ``metrics.json`` and
``csv/metrics.csv``. The *swept keys* are the override keys whose values differ between jobs; ``seed`` is
the replicate key, so the summary has one row per combination of baseline, ablation and the other swept
keys, with the mean and std of every metric over seeds. Unfinished jobs are listed, not counted: a job
without ``metrics.json`` is *running* while another process holds the lock on its ``.delia.lock``
(see :func:`delia.locking.file_lock`) and *failed* otherwise.

Python use (e.g. from a notebook)::

    report = collect("outputs/multirun/2026-11-21/09-54-01")
    rows = summary_table(report)            # list of dicts, one per (baseline, ablation, ...) group
    paths, markdown = write_report(report)  # report.csv, report.md and the PNG plots, in the sweep dir
    fig = plot_loss_curves(report)          # each plot also as a matplotlib Figure (see PLOTS)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from delia.errors import DeliaError, report_errors
from delia.locking import is_locked

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Status = Literal["done", "failed", "running"]
Value = str | int | float | bool | None

REPLICATE_KEY = "seed"
# resolved config fields kept per job (dotted paths into config.yaml)
CONFIG_FIELDS = (
    "baseline.name",
    "ablation.name",
    "dataset.name",
    "dataset.train_size",
    "model.name",
    "seed",
    "diverse.name",
    "diverse.ratio",
    "schedule.name",
    "token_init.strategy",
    "peft.name",
    "optimizer.lr",
    "trainer.max_steps",
)
# the metrics of the paper's figure, in its order; eval/loss stands in when generation was off
KEY_METRICS = (
    "eval/format_acc",
    "eval/label_acc",
    "heldout/format_acc",
    "heldout/label_acc",
    "negative/format_rate",
)
FALLBACK_METRICS = ("eval/loss",)
LOSS_COLUMNS = ("train/loss_task", "train/loss_diverse")
PLOT_FILES = {
    "metric_vs_train_size": "metric_vs_train_size.png",
    "ablation_heatmap": "ablation_heatmap.png",
    "loss_curves": "loss_curves.png",
}
SWEEP_HINT = "pass a multirun dir such as outputs/multirun/<date>/<time>"


class MissingData(Exception):
    """A plot has nothing to draw; the message says what is missing (a note, not an error)."""


@dataclass
class Job:
    """One job dir of the sweep."""

    path: Path
    num: int
    status: Status
    overrides: dict[str, Value] | None  # None: no .hydra/overrides.yaml (the job never started)
    config: dict[str, Any]  # CONFIG_FIELDS, from the resolved config.yaml
    metrics: dict[str, float]  # NaN where metrics.json has null; empty unless done
    note: str = ""  # why a job is not done, when the log says
    swept: dict[str, Value] = field(default_factory=dict)  # this job's values of the sweep's swept keys

    @property
    def baseline(self) -> str:
        """From the resolved config, else the ``baseline=`` override, else ``?``."""
        return str(self.config.get("baseline.name") or (self.overrides or {}).get("baseline") or "?")

    @property
    def ablation(self) -> str:
        """From the resolved config, else the ``ablation=`` override, else ``none``."""
        return str(self.config.get("ablation.name") or (self.overrides or {}).get("ablation") or "none")

    @property
    def method(self) -> str:
        """``delia``, ``common_it``, or ``delia + no_diverse_data`` for an ablation."""
        return self.baseline if self.ablation == "none" else f"{self.baseline} + {self.ablation}"


@dataclass
class Report:
    """Every job of a sweep, and which override keys the sweep varied."""

    sweep_dir: Path
    jobs: list[Job]
    swept_keys: list[str]
    only_metrics: list[str] | None = None  # ``--metrics``: the metrics to show, in this order

    @property
    def finished(self) -> list[Job]:
        return [job for job in self.jobs if job.status == "done"]

    @property
    def unfinished(self) -> list[Job]:
        return [job for job in self.jobs if job.status != "done"]

    @property
    def group_keys(self) -> list[str]:
        """The summary's row keys: baseline, ablation, then the other swept keys except the seed."""
        fixed = ("baseline", "ablation", REPLICATE_KEY)
        return ["baseline", "ablation", *(k for k in self.swept_keys if k not in fixed)]

    @property
    def metric_names(self) -> list[str]:
        """Every metric of a finished job, in the order the jobs report them (or ``only_metrics``)."""
        names = list(dict.fromkeys(name for job in self.finished for name in job.metrics))
        return [n for n in self.only_metrics if n in names] if self.only_metrics else names


# ---------------------------------------------------------------------------------------------- collect


def collect(sweep_dir: str | Path) -> Report:
    """Read every numbered job dir of ``sweep_dir`` into a :class:`Report`."""
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise DeliaError(f"{sweep}: no such directory; {SWEEP_HINT}")
    job_dirs = sorted(
        (p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not job_dirs:
        raise DeliaError(f"{sweep}: no job directories (0/, 1/, ...) found; {SWEEP_HINT}")
    jobs = [read_job(path) for path in job_dirs]
    keys = swept_keys(jobs)
    for job in jobs:
        job.swept = {key: (job.overrides or {}).get(key) for key in keys}
        if REPLICATE_KEY in keys and job.config.get("seed") is not None:
            job.swept[REPLICATE_KEY] = job.config["seed"]
    return Report(sweep, jobs, keys)


def read_job(path: Path) -> Job:
    """One job dir: its status, overrides, resolved config fields and metrics."""
    status, metrics, note = job_status(path)
    return Job(
        path=path,
        num=int(path.name),
        status=status,
        overrides=read_overrides(path / ".hydra" / "overrides.yaml"),
        config=read_config(path),
        metrics=metrics,
        note=note,
    )


def job_status(path: Path) -> tuple[Status, dict[str, float], str]:
    """``running`` while the job's lock is held, else ``done`` with its metrics, else ``failed``."""
    if is_locked(path / ".delia.lock"):
        return "running", {}, ""
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        return "failed", {}, last_error(path / "train.log") or "no metrics.json"
    try:
        payload = json.loads(metrics_file.read_text())
        return "done", parse_metrics(payload.get("metrics", {})), ""
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as err:
        return "failed", {}, f"metrics.json unreadable ({err})"


def last_error(log_file: Path) -> str:
    """The message of the last ``[ERROR]`` line of a job's ``train.log``, if any."""
    if not log_file.is_file():
        return ""
    errors = [line for line in log_file.read_text(errors="replace").splitlines() if "][ERROR] - " in line]
    return errors[-1].split("][ERROR] - ", 1)[1].strip() if errors else ""


def parse_metrics(raw: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics as floats; null becomes NaN; anything else is dropped."""
    out: dict[str, float] = {}
    for name, value in raw.items():
        if value is None:
            out[name] = math.nan
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def read_overrides(path: Path) -> dict[str, Value] | None:
    """``.hydra/overrides.yaml`` (a list of ``key=value``) as a dict, values parsed as YAML scalars."""
    if not path.is_file():
        return None
    items = yaml.safe_load(path.read_text()) or []
    out: dict[str, Value] = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = parse_scalar(value)
    return out


def parse_scalar(text: str) -> Value:
    """``"1"`` -> 1, ``"0.5"`` -> 0.5, ``"null"`` -> None; lists, dicts and odd text stay strings."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool | type(None)) else text


def read_config(path: Path) -> dict[str, Any]:
    """:data:`CONFIG_FIELDS` from the resolved ``config.yaml`` (else Hydra's copy, else nothing)."""
    for candidate in (path / "config.yaml", path / ".hydra" / "config.yaml"):
        if candidate.is_file():
            try:
                cfg = yaml.safe_load(candidate.read_text()) or {}
            except yaml.YAMLError:
                continue
            return {name: dotted(cfg, name) for name in CONFIG_FIELDS}
    return {}


def dotted(cfg: Any, name: str) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"``; None where a part is missing."""
    for part in name.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def swept_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose values differ between the jobs that started, in override order."""
    started = [job.overrides for job in jobs if job.overrides is not None]
    keys = dict.fromkeys(key for overrides in started for key in overrides)
    return [key for key in keys if len({repr(o.get(key)) for o in started}) > 1]


# ---------------------------------------------------------------------------------------------- tables


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of the finite values; NaN where there are too few."""
    finite = [v for v in values if math.isfinite(v)]
    mean = statistics.fmean(finite) if finite else math.nan
    std = statistics.stdev(finite) if len(finite) >= 2 else math.nan
    return mean, std


def sort_key(values: Sequence[Value]) -> tuple[tuple[int, Any], ...]:
    """Numbers before text before missing, each in natural order."""
    out = []
    for value in values:
        if isinstance(value, int | float):
            out.append((0, float(value)))
        elif value is None:
            out.append((2, ""))
        else:
            out.append((1, str(value)))
    return tuple(out)


def group_value(job: Job, key: str) -> Value:
    """A job's value of a summary row key."""
    if key == "baseline":
        return job.baseline
    if key == "ablation":
        return job.ablation
    return job.swept.get(key)


def group_jobs(jobs: Iterable[Job], key: Callable[[Job], tuple]) -> dict[tuple, list[Job]]:
    """Jobs by ``key(job)``, groups in :func:`sort_key` order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(key(job), []).append(job)
    return dict(sorted(groups.items(), key=lambda item: sort_key(item[0])))


def summary_table(report: Report) -> list[dict[str, Any]]:
    """One row per (baseline, ablation, other swept keys) over the finished jobs.

    Each row has the group keys, ``n_seeds`` and ``<metric> mean`` / ``<metric> std`` for every metric
    (std with ddof=1, NaN when fewer than two seeds have the metric). Rows are sorted by baseline, then
    ablation, then the other keys.
    """
    keys = report.group_keys
    metrics = report.metric_names
    rows = []
    for values, jobs in group_jobs(report.finished, lambda j: tuple(group_value(j, k) for k in keys)).items():
        row: dict[str, Any] = dict(zip(keys, values, strict=True))
        row["n_seeds"] = len(jobs)
        for name in metrics:
            row[f"{name} mean"], row[f"{name} std"] = mean_std(j.metrics.get(name, math.nan) for j in jobs)
        rows.append(row)
    return rows


def jobs_table(report: Report) -> list[dict[str, Any]]:
    """One row per job: dir, status, swept values, resolved config fields and metrics."""
    return [
        {"job": job.num, "status": job.status, "method": job.method, **job.swept, **job.config, **job.metrics}
        for job in report.jobs
    ]


def fmt(value: Any) -> str:
    """A table cell: floats to 3 decimals, NaN and None empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(report: Report, rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table, each metric as ``mean ± std``."""
    keys = [*report.group_keys, "n_seeds"]
    metrics = report.metric_names
    lines = [
        "| " + " | ".join([*keys, *metrics]) + " |",
        "|" + "---|" * (len(keys) + len(metrics)),
    ]
    for row in rows:
        cells = [fmt(row[k]) for k in keys]
        for name in metrics:
            mean, std = fmt(row[f"{name} mean"]), fmt(row[f"{name} std"])
            cells.append(f"{mean} ± {std}" if mean and std else mean or "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(report: Report, rows: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """``report.md``: counts, the summary table, the unfinished jobs and the plot notes."""
    counts = {s: sum(j.status == s for j in report.jobs) for s in ("done", "failed", "running")}
    swept = ", ".join(report.swept_keys) or "nothing"
    lines = [
        f"# Sweep {report.sweep_dir}",
        "",
        f"{len(report.jobs)} jobs: {counts['done']} done, {counts['failed']} failed, {counts['running']} running. "
        f"Swept: {swept}; `{REPLICATE_KEY}` is the replicate (mean ± std over seeds, std with ddof=1).",
        "",
        markdown_table(report, rows) if rows else "No finished jobs yet.",
    ]
    if report.unfinished:
        lines += ["", "## Not finished", "", "| job | status | note |", "|---|---|---|"]
        lines += [
            f"| {job.path} | {job.status} | {job.note.replace('|', '/')} |" for job in report.unfinished
        ]
    if notes:
        lines += ["", "## Plots", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """The summary rows as CSV; NaN cells are left empty."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})


# ---------------------------------------------------------------------------------------------- plots


def new_figure(n_panels: int, width: float = 4.0, height: float = 3.2) -> tuple[Figure, list[Any]]:
    """A figure with ``n_panels`` axes in a row, drawn with the Agg canvas (no GUI, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def line_label(job: Job, report: Report, leave_out: Sequence[str] = ()) -> str:
    """The method, plus the values of the other swept keys (except seed and ``leave_out``)."""
    extra = [k for k in report.group_keys[2:] if k not in leave_out]
    return ", ".join([job.method, *(f"{k}={job.swept.get(k)}" for k in extra)])


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
    """The paper's key metrics that some finished job has; else eval/loss."""
    have = {n for job in report.finished for n, v in job.metrics.items() if math.isfinite(v)}
    return [m for m in KEY_METRICS if m in have] or [m for m in FALLBACK_METRICS if m in have]


def plot_metric_vs_train_size(report: Report) -> Figure:
    """One panel per key metric: x = dataset.train_size, a line per method, error bars = std over seeds."""
    metrics = plotted_metrics(report)
    jobs = [j for j in report.finished if isinstance(j.config.get("dataset.train_size"), int | float)]
    if not metrics or not jobs:
        raise MissingData("no finished job with dataset.train_size and a key metric")
    lines = group_jobs(jobs, lambda j: (line_label(j, report, leave_out=["dataset.train_size"]),))
    colors = line_colors(label for (label,) in lines)
    sizes = sorted({j.config["dataset.train_size"] for j in jobs})
    fig, axes = new_figure(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        for (label,), members in lines.items():
            points = group_jobs(members, lambda j: (j.config["dataset.train_size"],))
            xs = [x for (x,) in points]
            stats = [mean_std(j.metrics.get(metric, math.nan) for j in group) for group in points.values()]
            means = [m for m, _ in stats]
            stds = [0.0 if math.isnan(s) else s for _, s in stats]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label, color=colors[label])
        if len(sizes) > 1 and sizes[0] > 0 and sizes[-1] / sizes[0] >= 10:
            ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("training examples (dataset.train_size)")
        ax.set_title(metric)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ± std over seeds")
    figure_legend(fig, axes)
    return fig


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


def plot_loss_curves(report: Report) -> Figure:
    """train/loss_task and train/loss_diverse against step, one line per method, mean over its runs.

    A method's runs are its seeds (and, when the sweep varies other keys, all their values).
    """
    lines = group_jobs(report.finished, lambda j: (j.method,))
    colors = line_colors(label for (label,) in lines)
    curves = {
        column: {
            label: [read_curve(j.path / "csv" / "metrics.csv", column) for j in members]
            for (label,), members in lines.items()
        }
        for column in LOSS_COLUMNS
    }
    if not any(c for per_label in curves.values() for runs in per_label.values() for c in runs):
        raise MissingData(f"no finished job logged {' or '.join(LOSS_COLUMNS)} in csv/metrics.csv")
    fig, axes = new_figure(len(LOSS_COLUMNS), width=4.5)
    for ax, column in zip(axes, LOSS_COLUMNS, strict=True):
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
    axes[0].set_ylabel("loss, mean over seeds")
    figure_legend(fig, axes)
    return fig


PLOTS: dict[str, Callable[[Report], Figure]] = {
    "metric_vs_train_size": plot_metric_vs_train_size,
    "ablation_heatmap": plot_ablation_heatmap,
    "loss_curves": plot_loss_curves,
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


def write_report(report: Report, out_dir: str | Path | None = None) -> tuple[list[Path], str]:
    """Write ``report.csv``, ``report.md`` and the plots into ``out_dir`` (default: the sweep dir).

    Returns the paths written and the Markdown text.
    """
    out = Path(out_dir) if out_dir is not None else report.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_table(report)
    write_csv(rows, out / "report.csv")
    plots, notes = write_plots(report, out)
    markdown = markdown_report(report, rows, notes)
    (out / "report.md").write_text(markdown)
    return [out / "report.csv", out / "report.md", *plots], markdown


# ---------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``SWEEP_DIR [--out DIR] [--metrics A,B,...]``."""
    parser = argparse.ArgumentParser(
        prog="delia-report",
        description="Collect every job of a Hydra multirun sweep into report.csv, report.md and PNG plots.",
    )
    parser.add_argument(
        "sweep_dir",
        type=Path,
        metavar="SWEEP_DIR",
        help="a multirun dir, e.g. outputs/multirun/<date>/<time>",
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="where to write the report (default: SWEEP_DIR)"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="A,B,...",
        help="only these metrics, in this order (default: every metric the jobs report)",
    )
    return parser.parse_args(argv)


@report_errors
def main(argv: Sequence[str] | None = None) -> None:
    """``delia-report SWEEP_DIR [--out DIR]``: print the Markdown report and the files written."""
    args = parse_args(argv)
    report = collect(args.sweep_dir)
    if args.metrics:
        report.only_metrics = [name.strip() for name in args.metrics.split(",") if name.strip()]
    paths, markdown = write_report(report, args.out)
    print(markdown)
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
