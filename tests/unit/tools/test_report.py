"""delia-report: a real 2x2 tiny_random sweep collected into one table, plots, partial sweeps, the notebook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from delia.cli.report import main
from delia.tools.report import collect, heatmap_data, summary_table, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("metric_vs_train_size.png", "ablation_heatmap.png", "loss_curves.png")


def run_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "delia.cli.report", *args], capture_output=True, text=True, timeout=300
    )


def test_non_sweep_dir_is_one_line_error_with_status_2(tmp_path: Path, capsys) -> None:
    done = run_report(str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"delia: error: {tmp_path}: no job directories (0/, 1/, ...) found; "
        "pass a multirun dir such as outputs/multirun/<date>/<time>\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"delia: error: {tmp_path / 'missing'}: no such directory")


# --- a synthetic sweep (no training): train_size and ablations swept, a null metric, a job never started


def fake_job(
    sweep: Path, num: int, baseline: str, ablation: str, size: int, seed: int, metrics: dict | None
) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    overrides = [
        "model=tiny_random",
        f"baseline={baseline}",
        f"ablation={ablation}",
        f"dataset.train_size={size}",
        f"seed={seed}",
    ]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {
        "seed": seed,
        "baseline": {"name": baseline},
        "ablation": {"name": ablation},
        "dataset": {"name": "sep_format", "train_size": size},
        "model": {"name": "tiny_random"},
    }
    (job / "config.yaml").write_text(yaml.safe_dump(config))
    (job / ".delia.lock").write_text("pid 1")
    if metrics is not None:
        payload = {"metrics": metrics, "baseline": baseline, "ablation": ablation}
        (job / "metrics.json").write_text(json.dumps(payload))


def add_override(job: Path, override: str) -> None:
    """Append ``override`` to a fake job's .hydra/overrides.yaml."""
    path = job / ".hydra" / "overrides.yaml"
    path.write_text(yaml.safe_dump([*yaml.safe_load(path.read_text()), override]))


def test_synthetic_sweep_groups_by_train_size_and_ablation(tmp_path: Path) -> None:
    sweep = tmp_path / "fake"
    grid = [("delia", "none"), ("delia", "no_diverse_data"), ("common_it", "none")]
    num = 0
    for baseline, ablation in grid:
        for size in (100, 10):
            for seed in (1, 2, 3):
                acc = 0.5 + 0.1 * seed + (0.2 if baseline == "delia" else 0.0)
                metrics = {"eval/format_acc": acc, "negative/format_rate": None if seed == 3 else 0.5}
                fake_job(sweep, num, baseline, ablation, size, seed, metrics)
                num += 1
    (sweep / str(num)).mkdir()  # a job that never started
    report = collect(sweep)
    assert report.swept_keys == ["baseline", "ablation", "dataset.train_size", "seed"]
    assert report.jobs[-1].status == "failed" and report.jobs[-1].overrides is None
    rows = summary_table(report)
    keys = [(r["baseline"], r["ablation"], r["dataset.train_size"]) for r in rows]
    assert keys == [
        ("common_it", "none", 10),
        ("common_it", "none", 100),
        ("delia", "no_diverse_data", 10),
        ("delia", "no_diverse_data", 100),
        ("delia", "none", 10),
        ("delia", "none", 100),
    ]
    assert all(r["n_seeds"] == 3 for r in rows)
    assert rows[0]["eval/format_acc mean"] == pytest.approx(0.7)
    assert rows[0]["eval/format_acc std"] == pytest.approx(0.1)
    assert rows[0]["negative/format_rate mean"] == 0.5  # the null of seed 3 is left out
    title, heat_rows, columns, _ = heatmap_data(report)
    assert title.startswith("ablation") and heat_rows == ["no_diverse_data", "none"]
    assert columns == ["eval/format_acc", "negative/format_rate"]
    written, markdown = write_report(report, tmp_path / "out")
    assert {p.name for p in written} == {"report.csv", "report.md", *PLOTS[:2]}
    assert "loss_curves.png skipped: no finished job logged train/loss_task" in markdown
    assert "| 0.700 ± 0.100 |" in markdown and "## Not finished" in markdown


@pytest.mark.parametrize("override", ["resume=auto", "checkpoint_every_n_steps=130"])
def test_an_operational_override_is_not_a_factor_of_the_sweep(override: str, tmp_path: Path) -> None:
    sweep = tmp_path / "parts"
    for part, seed in (("first", 1), ("rerun", 2)):
        fake_job(sweep / part, 0, "delia", "none", 16, seed, {"eval/format_acc": 0.5})
    add_override(sweep / "rerun" / "0", override)
    report = collect(sweep)
    assert report.swept_keys == ["seed"]
    assert [row["n_seeds"] for row in summary_table(report)] == [2]


def test_old_result_folders_stay_readable_under_the_new_split_names(tmp_path: Path) -> None:
    sweep = tmp_path / "old"
    for seed in (1, 2):
        old = {"eval/format_acc": 0.5, "heldout/format_acc": 0.25 * seed, "heldout/label_acc": 0.5}
        fake_job(sweep, seed, "delia", "none", 32, seed, old)
    report = collect(sweep)
    job = report.finished[0]
    assert job.metrics["unseen_wordings/format_acc"] == 0.25 and "heldout/format_acc" not in job.metrics
    assert job.metrics["eval/format_acc"] == 0.5  # the old mixed-wordings split keeps its own name
    assert summary_table(report)[0]["unseen_wordings/format_acc mean"] == pytest.approx(0.375)


def test_a_ratio_sweep_is_plotted_against_the_ratio_with_a_band(tmp_path: Path) -> None:
    sweep = tmp_path / "ratios"
    num = 0
    for ratio in (0, 4, 16, 64):
        for seed in (1, 2):
            metrics = {
                "unseen_wordings/format_acc": 0.1 * seed + ratio / 100,
                "repr/rel_l2_layer1": 1.0 - ratio / 100,
            }
            fake_job(sweep, num, "delia", "none", 16, seed, metrics)
            config = yaml.safe_load((sweep / str(num) / "config.yaml").read_text())
            config["diverse"] = {"name": "self_sample", "ratio": float(ratio)}
            (sweep / str(num) / "config.yaml").write_text(yaml.safe_dump(config))
            add_override(sweep / str(num), f"diverse.ratio={ratio}")
            num += 1
    # a reference: no diverse.ratio override, though its resolved config has the experiment's ratio
    fake_job(sweep, num, "common_it", "none", 16, 1, {"unseen_wordings/format_acc": 0.05})
    config = yaml.safe_load((sweep / str(num) / "config.yaml").read_text())
    (sweep / str(num) / "config.yaml").write_text(yaml.safe_dump({**config, "diverse": {"ratio": 16.0}}))
    from delia.tools.report.plots import plot_metric_vs_ratio, plotted_metrics

    report = collect(sweep)
    assert plotted_metrics(report) == ["unseen_wordings/format_acc", "repr/rel_l2_layer1"]
    fig = plot_metric_vs_ratio(report)
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() > band.min()  # the std over the two seeds is drawn as a band
    reference = next(line for line in fig.axes[0].lines if line.get_label() == "common_it")
    assert reference.get_linestyle() == "--" and list(reference.get_xdata()) == [0, 64]
    assert list(reference.get_ydata()) == pytest.approx([0.05, 0.05])  # across the ratios, not at 16
    written, _ = write_report(report, tmp_path / "out")
    assert "metric_vs_ratio.png" in {p.name for p in written}


def test_buffering_curves_draw_one_line_per_ratio_mean_over_seeds(tmp_path: Path) -> None:
    sweep = tmp_path / "ratios"
    num = 0
    for ratio in (0, 4):
        for seed in (1, 2):
            fake_job(sweep, num, "delia", "none", 16, seed, {"unseen_wordings/format_acc": 0.5})
            add_override(sweep / str(num), f"diverse.ratio={ratio}")
            (sweep / str(num) / "csv").mkdir()
            rows = ["step,buffer/diverse_cancellation", "0,0.4", f"32,{0.1 * seed + ratio / 10}"]
            (sweep / str(num) / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
            num += 1
    from delia.tools.report import plot_buffering_curves

    fig = plot_buffering_curves(collect(sweep))
    lines = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].lines}
    assert lines == {
        "delia, diverse.ratio=0": pytest.approx([0.4, 0.15]),
        "delia, diverse.ratio=4": pytest.approx([0.4, 0.55]),
    }
    assert fig.axes[1].texts[0].get_text() == "not logged"  # buffer/task_cancellation is not in the csv
    fake_job(sweep, num, "common_it", "none", 16, 1, {"unseen_wordings/format_acc": 0.5})  # no ratio override
    (sweep / str(num) / "csv").mkdir()
    (sweep / str(num) / "csv" / "metrics.csv").write_text("step,buffer/diverse_cancellation\n0,0.4\n")
    labels = [line.get_label() for line in plot_buffering_curves(collect(sweep)).axes[0].lines]
    assert labels == ["common_it", "delia, diverse.ratio=0", "delia, diverse.ratio=4"]
