"""``delia-report SWEEP_DIR``: one table and a few plots for every job of a Hydra multirun sweep.

A sweep dir (``outputs/multirun/<date>/<time>/``) holds one numbered dir per job (``0/``, ``1/``, ...).
Each job is read from its ``.hydra/overrides.yaml``, resolved ``config.yaml``, ``metrics.json`` and
``csv/metrics.csv``. The *swept keys* are the override keys whose values differ between jobs; ``seed`` is
the replicate key, so the summary has one row per combination of baseline, ablation and the other swept
keys, with the mean and std of every metric over seeds. Unfinished jobs are listed, not counted: a job
without ``metrics.json`` is *running* while another process holds the lock on its ``.delia.lock``
(see :func:`delia.infra.files.file_lock`) and *failed* otherwise.

Python use (e.g. from a notebook)::

    report = collect("outputs/multirun/2026-11-21/09-54-01")
    rows = summary_table(report)            # list of dicts, one per (baseline, ablation, ...) group
    paths, markdown = write_report(report)  # report.csv, report.md and the PNG plots, in the sweep dir
    diffs = paired_differences(report, "common_it")  # each group minus common_it, paired by seed
    fig = plot_loss_curves(report)          # each plot also as a matplotlib Figure (see PLOTS)
"""

from __future__ import annotations

from pathlib import Path

from delia.tools.report.jobs import Job, MissingData, Report, collect
from delia.tools.report.paired import paired_differences, paired_markdown, paired_rows
from delia.tools.report.plots import (
    PLOTS,
    heatmap_data,
    plot_ablation_heatmap,
    plot_buffering_curves,
    plot_loss_curves,
    plot_metric_vs_train_size,
    write_plots,
)
from delia.tools.report.tables import jobs_table, markdown_report, summary_table, write_csv

__all__ = [
    "PLOTS",
    "Job",
    "MissingData",
    "Report",
    "collect",
    "heatmap_data",
    "jobs_table",
    "paired_differences",
    "plot_ablation_heatmap",
    "plot_buffering_curves",
    "plot_loss_curves",
    "plot_metric_vs_train_size",
    "summary_table",
    "write_report",
]


def write_report(
    report: Report, out_dir: str | Path | None = None, against: str | None = None
) -> tuple[list[Path], str]:
    """Write ``report.csv``, ``report.md`` and the plots into ``out_dir`` (default: the sweep dir); with
    ``against`` (a method), also ``paired.csv`` and ``paired.md`` (:mod:`delia.tools.report.paired`).

    Returns the paths written and the Markdown text (the paired table appended).
    """
    out = Path(out_dir) if out_dir is not None else report.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_table(report)
    write_csv(rows, out / "report.csv")
    plots, notes = write_plots(report, out)
    markdown = markdown_report(report, rows, notes)
    (out / "report.md").write_text(markdown)
    written = [out / "report.csv", out / "report.md", *plots]
    if against:
        differences = paired_differences(report, against)
        write_csv(paired_rows(differences), out / "paired.csv")
        paired = paired_markdown(differences, against)
        (out / "paired.md").write_text(paired)
        written += [out / "paired.csv", out / "paired.md"]
        markdown += "\n" + paired
    return written, markdown
