"""The console of a run: every message once, no advertisement, progress bars with a rate and an ETA,
library warnings the user cannot act on filtered by exact text, and a summary at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import TINY


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


QUIET = """
import logging, warnings
logging.basicConfig(format="%(name)s|%(message)s")
from delia.console import QUIET_WARNINGS, setup_console
setup_console()
warnings.warn(QUIET_WARNINGS[0], FutureWarning)
warnings.warn("lower optimizer.lr: the loss is rising", UserWarning)
logging.getLogger("x").info("not shown below WARNING")
"""


def test_warnings_are_filtered_by_exact_text_and_actionable_ones_stay() -> None:
    result = subprocess.run([sys.executable, "-c", QUIET], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "is_gradient_checkpointing" not in result.stderr
    assert "py.warnings|UserWarning: lower optimizer.lr: the loss is rising" in result.stderr
