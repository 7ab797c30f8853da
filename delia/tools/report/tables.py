"""The sweep's tables: one row per method and swept setting, mean and std over seeds; CSV and Markdown."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from delia.tools.report.jobs import REPLICATE_KEY, Job, Report, Value


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
