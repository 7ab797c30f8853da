"""The console of every entry point: every message once, no advertisement or library deprecation, no
line printed by a library's own handler; for delia-train also progress bars with a rate and an ETA and a
summary at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import TINY
from tests.unit.tools.test_report import fake_job


def shown_lines(text: str) -> list[str]:
    """The lines a terminal shows: a progress bar redraws its line with ``\\r``, so the last draw counts."""
    lines = [line.split("\r")[-1].strip() for line in text.split("\n")]
    return [line for line in lines if line]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """A tiny run's console (stdout + stderr as a user sees them), with progress bars and logger=mlflow."""
    root = tmp_path_factory.mktemp("console")
    overrides = [o for o in TINY if not o.startswith("trainer.enable_progress_bar")]
    env = {**os.environ, "DELIA_OUTPUT_ROOT": str(root / "outputs")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "delia.cli.train",
            *overrides,
            "logger=mlflow",
            f"hydra.run.dir={root / 'run'}",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    return root / "run", result.stdout, root / "outputs"


def test_no_line_is_printed_twice(console: tuple[Path, str, Path]) -> None:
    _, text, _ = console
    twice = {line: n for line, n in Counter(shown_lines(text)).items() if n > 1}
    assert not twice, twice
    assert text.count("Seed set to 42") == 1  # Lightning's handler and Hydra's logging each printed it


def test_no_advertisement_no_epoch_bar_no_library_deprecation(console: tuple[Path, str, Path]) -> None:
    _, text, _ = console
    for unwanted in ("litlogger", "Epoch 0/-2", "FutureWarning", "is_gradient_checkpointing", "LeafSpec"):
        assert unwanted not in text, unwanted


def test_progress_bars_count_the_whole_run_with_a_rate_and_an_eta(console: tuple[Path, str, Path]) -> None:
    _, text, _ = console
    lines = shown_lines(text)
    training = [line for line in lines if line.startswith("training: 100%")]
    assert training and "2/2 [" in training[-1]
    assert "step/s" in training[-1] or "s/step" in training[-1]  # the rate
    assert "loss_task=" in training[-1]
    for phase in ("evaluating seen_wordings", "evaluating unseen_wordings", "retention probe after tuning"):
        bar = [line for line in lines if line.startswith(f"{phase}: 100%")]
        assert bar and "<00:00" in bar[-1], phase  # elapsed<remaining: the ETA, and a rate after it


def test_the_run_ends_with_a_summary(console: tuple[Path, str, Path]) -> None:
    """Also the check that ``python -m delia.cli.train`` runs end to end and writes its metrics."""
    run_dir, text, _ = console
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"]["eval/loss"] > 0
    tail = text[text.rindex("DELIA run finished") :]
    assert "eval/loss" in tail and "retention/probe_acc_change" in tail
    assert f"run dir:      {run_dir}" in tail
    assert f"dashboard:    delia-dashboard {run_dir}   (MLflow, this run)" in tail
    assert f"re-evaluate:  delia-eval run_dir={run_dir}" in tail


def test_the_log_file_has_each_message_once_and_no_advertisement(console: tuple[Path, str, Path]) -> None:
    run_dir, _, _ = console
    log = (run_dir / "train.log").read_text()
    assert "litlogger" not in log and "GPU available" in log
    messages = [line.split("] - ", 1)[-1] for line in log.splitlines()]
    assert messages.count("GPU available: False, used: False") == 1


def test_a_single_run_is_logged_to_the_mlflow_experiment_runs(console: tuple[Path, str, Path]) -> None:
    from mlflow.tracking import MlflowClient

    from delia.dashboard import store_uri

    mlflow = MlflowClient(store_uri(console[2]))
    [run] = mlflow.search_runs([mlflow.get_experiment_by_name("runs").experiment_id])
    assert run.info.run_name == "delia-seed42" and run.info.status == "FINISHED"
    assert {
        "retention/probe_acc_change",
        "retention/ppl_heldout_diverse_after",
        "seen_wordings/format_acc",
    } <= set(run.data.metrics)


def entry_point(module: str, args: list[str], cwd: Path) -> str:
    """What ``module``'s console script prints (stdout and stderr together, as a terminal shows them)."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, "DELIA_OUTPUT_ROOT": str(cwd / "outputs")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


def assert_clean(text: str) -> None:
    """Each shown line once; nothing from Lightning's or transformers' own handlers, no advertisement."""
    twice = {line: n for line, n in Counter(shown_lines(text)).items() if n > 1}
    assert not twice, twice
    for unwanted in ("INFO: ", "[transformers]", "litlogger", "FutureWarning", "LeafSpec"):
        assert unwanted not in text, (unwanted, text[-3000:])


@pytest.mark.parametrize("app", ["bench", "sample", "eval", "report"])
def test_every_entry_point_prints_each_line_once(
    app: str, console: tuple[Path, str, Path], tmp_path: Path
) -> None:
    run_dir = console[0]
    fast = [o for o in TINY if not o.startswith("trainer.enable_progress_bar")]
    if app == "bench":
        one = ["bench.rounds=1", "bench.recipes=[ours,trl_release]", "bench.workloads=[task]"]
        args = [
            *fast,
            *one,
            "bench.steps=1",
            "bench.warmup=0",
            "bench.measure=[train]",
            "hydra.run.dir=bench",
        ]
    elif app == "sample":
        args = [*fast, "diverse.ratio=2", "hydra.run.dir=sample"]
    elif app == "eval":
        args = [f"run_dir={run_dir}", "eval.max_new_tokens=4", "hydra.run.dir=eval"]
    else:
        fake_job(tmp_path / "sweep", 0, "delia", "none", 8, 1, {"eval/loss": 1.0})
        (tmp_path / "sweep" / "multirun.yaml").write_text("{}")
        args = [str(tmp_path / "sweep")]
    text = entry_point(f"delia.cli.{app}", args, tmp_path)
    assert_clean(text)
