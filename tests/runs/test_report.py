"""delia-report: a real 2x2 tiny_random sweep collected into one table, plots, partial sweeps, the notebook."""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from delia.tools.report import collect, summary_table, write_report
from tests.conftest import REPO
from tests.unit.tools.test_report import PLOTS, PNG_MAGIC, run_report

SWEEP_PLOTS = PLOTS[1:]  # the fixture's sweep has one train size: no plot against it


SWEEP_ARGS = [
    "-m",
    "delia.cli.train",
    "-m",
    "model=tiny_random",
    "debug=fast",
    "trainer.enable_progress_bar=false",
    "eval.generate=false",
    "baseline=delia,common_it",
    "seed=1,2",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> Path:
    """A real 2x2 multirun (baseline x seed) of tiny_random, 2 steps each, as ``delia-train -m`` runs it."""
    work = tmp_path_factory.mktemp("report")
    sweep_dir = work / "sweep"
    env = {**os.environ, "DELIA_CACHE_DIR": os.environ["DELIA_CACHE_DIR"], "DELIA_OUTPUT_ROOT": str(work)}
    done = subprocess.run(
        [sys.executable, *SWEEP_ARGS, f"hydra.sweep.dir={sweep_dir}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return sweep_dir


def copy_sweep(sweep: Path, dest: Path) -> Path:
    """A copy without the report files, so each test writes its own."""
    return Path(shutil.copytree(sweep, dest, ignore=shutil.ignore_patterns("report.*", "*.png")))


def test_sweep_has_four_jobs_each_with_its_own_metrics(sweep: Path) -> None:
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    payloads = [json.loads((p / "metrics.json").read_text()) for p in jobs]
    assert sorted(p["baseline"] for p in payloads) == ["common_it", "common_it", "delia", "delia"]
    assert (sweep / "multirun.yaml").is_file()


def test_delia_report_writes_table_markdown_and_plots(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_report(str(sweep), "--out", str(out))
    assert done.returncode == 0, done.stderr
    for name in ("report.csv", "report.md", *SWEEP_PLOTS):
        assert f"wrote {out / name}" in done.stdout
    for name in SWEEP_PLOTS:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    assert "metric_vs_train_size.png skipped: the sweep does not vary dataset.train_size" in done.stdout
    markdown = (out / "report.md").read_text()
    assert markdown in done.stdout + "\n"
    assert "| baseline | ablation | n_seeds | eval/loss |" in markdown and "Not finished" not in markdown
    assert " ± " in markdown.split("| common_it |")[1].splitlines()[0]
    # without --out the report goes into the sweep dir
    copy = copy_sweep(sweep, tmp_path / "copy")
    assert run_report(str(copy)).returncode == 0
    assert (copy / "report.md").is_file() and (copy / "loss_curves.png").read_bytes()[:8] == PNG_MAGIC


def test_summary_has_one_row_per_baseline_with_mean_and_std_over_seeds(sweep: Path) -> None:
    report = collect(sweep)
    assert report.swept_keys == ["baseline", "seed"]
    assert [job.status for job in report.jobs] == ["done"] * 4
    rows = summary_table(report)
    assert [row["baseline"] for row in rows] == ["common_it", "delia"]
    for row in rows:
        assert row["ablation"] == "none" and row["n_seeds"] == 2
        assert math.isfinite(row["eval/loss mean"]) and math.isfinite(row["eval/loss std"])
    losses = [job.metrics["eval/loss"] for job in report.jobs if job.baseline == "delia"]
    assert rows[1]["eval/loss mean"] == pytest.approx(sum(losses) / 2)
    assert rows[1]["eval/loss std"] == pytest.approx(abs(losses[0] - losses[1]) / math.sqrt(2))


def test_partial_sweep_lists_the_failed_job_and_counts_the_rest(sweep: Path, tmp_path: Path) -> None:
    copy = copy_sweep(sweep, tmp_path / "partial")
    report = collect(copy)
    victim = next(job for job in report.jobs if job.baseline == "common_it")
    (victim.path / "metrics.json").unlink()
    done = run_report(str(copy))
    assert done.returncode == 0, done.stderr
    markdown = (copy / "report.md").read_text()
    not_finished = markdown.split("## Not finished", 1)[1]
    assert f"| {victim.path} | failed |" in not_finished
    rows = {row["baseline"]: row for row in summary_table(collect(copy))}
    assert rows["common_it"]["n_seeds"] == 1 and math.isnan(rows["common_it"]["eval/loss std"])
    assert rows["delia"]["n_seeds"] == 2
    assert markdown.count("| common_it |") == 1


def test_job_holding_its_lock_is_running(sweep: Path, tmp_path: Path) -> None:
    copy = copy_sweep(sweep, tmp_path / "running")
    (copy / "1" / "metrics.json").unlink()  # a running job has not written its metrics yet
    with (copy / "1" / ".delia.lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        report = collect(copy)
        fcntl.flock(handle, fcntl.LOCK_UN)
    assert {job.num: job.status for job in report.jobs} == {0: "done", 1: "running", 2: "done", 3: "done"}
    _, markdown = write_report(report, tmp_path / "out")
    assert f"| {copy / '1'} | running |" in markdown
    # once the lock is released the same job reads as failed
    assert collect(copy).jobs[1].status == "failed"


def drawable_plots(sweep: Path) -> list[str]:
    """The report's plots that this sweep has the data for (the others say why they are skipped)."""
    from delia.tools.report import PLOTS, MissingData, collect

    report, names = collect(sweep), []
    for name, plot in PLOTS.items():
        try:
            plot(report)
        except MissingData:
            continue
        names.append(name)
    return names


def test_notebook_runs_top_to_bottom(sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = REPO / "notebooks" / "analysis.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "stored outputs"
    monkeypatch.setenv("DELIA_SWEEP_DIR", str(sweep))
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    drawable = drawable_plots(sweep)
    assert len(drawable) >= 2  # the loss curves and the ablation heatmap at least
    assert sum("image/png" in out.get("data", {}) for out in outputs) == len(drawable)
    assert any(str(sweep) in out.get("text", "") for out in outputs)


def test_metrics_option_keeps_only_those_columns_in_that_order(sweep: Path, tmp_path: Path) -> None:
    proc = run_report(
        str(sweep), "--out", str(tmp_path), "--metrics", "train/seen_task_examples,eval/loss,not/a_metric"
    )
    assert proc.returncode == 0, proc.stderr
    header = next(
        line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| baseline")
    )
    assert header.endswith("| n_seeds | train/seen_task_examples | eval/loss |")
