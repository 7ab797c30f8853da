"""The dashboards' loggers without a run: TensorBoard gets a log dir per job and hparams per run; an MLflow
run is continued on resume and never reused once finished; a folder without runs is one line. (The 2x2
sweep served over MLflow's REST API and in headless Chromium: tests/runs/test_dashboard.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def client(outputs: Path):
    from mlflow.tracking import MlflowClient

    from delia.dashboard import store_uri

    return MlflowClient(store_uri(outputs))


def test_a_folder_without_runs_is_a_one_line_error(tmp_path: Path) -> None:
    for extra in ([], ["--backend", "tensorboard"]):
        result = subprocess.run(
            [sys.executable, "-m", "delia.cli.dashboard", str(tmp_path), *extra],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "delia: error:" in result.stderr
        assert "logger=" in result.stderr  # says how to get runs there


# ------------------------------------------------------------------------------------------ TensorBoard
def tensorboard_run(save_dir: Path, seed: int, loss: float):
    from delia.dashboard.tensorboard import DeliaTensorBoardLogger

    labels = {"method": "delia", "baseline": "delia", "ablation": "none", "dataset": "sep_format",
              "model": "tiny_random", "seed": str(seed)}  # fmt: skip
    logger = DeliaTensorBoardLogger(str(save_dir), labels=labels, experiment="multirun/x")
    logger.log_hyperparams({"seed": seed, "optimizer": {"lr": 1e-3, "_target_": "torch.optim.AdamW"}})
    logger.log_metrics({"train/loss_task": loss + 1}, step=0)
    logger.log_metrics({"eval/loss": loss}, step=1)
    logger.close_run(save_dir)
    logger.finalize("success")
    return logger


def hparams_of(log_dir: Path) -> tuple[dict, list[str]]:
    """The session's hparams and the experiment's metric names, as TensorBoard's HParams plugin reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(log_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    values = {k: v.string_value or v.number_value for k, v in session.session_start_info.hparams.items()}
    return values, [m.name.tag for m in experiment.experiment.metric_infos]


def test_tensorboard_logs_a_dir_per_job_with_its_hparams(tmp_path: Path) -> None:
    logger = tensorboard_run(tmp_path / "0", seed=1, loss=2.0)
    assert Path(logger.log_dir) == tmp_path / "0" / "tensorboard" / "delia-seed1"
    values, metrics = hparams_of(Path(logger.log_dir))
    assert (
        values["method"] == "delia"
        and values["seed"] == "1"
        and values["optimizer.lr"] == pytest.approx(1e-3)
    )
    assert {"eval/loss", "train/loss_task"} <= set(metrics)
    assert "hp_metric" not in metrics  # no placeholder metric


def test_a_resumed_run_continues_its_mlflow_run_and_a_finished_one_is_not_reused(tmp_path: Path) -> None:
    from delia.dashboard.mlflow_logger import DeliaMLFlowLogger

    def logger() -> DeliaMLFlowLogger:
        labels = {"method": "delia", "seed": "3"}
        return DeliaMLFlowLogger(str(tmp_path / "out"), str(tmp_path / "run"), labels=labels)

    first = logger()
    first.log_hyperparams({"optimizer": {"lr": 0.1}, "resume": False})
    first.log_metrics({"train/loss_task": 1.0}, step=0)
    first.finalize("success")  # Lightning ends fitting: the run stays open for evaluation
    first.close_run(tmp_path / "run")  # preempted: no metrics.json
    mlflow = client(tmp_path / "out")
    assert mlflow.get_run(first.run_id).info.status == "KILLED"
    resumed = logger()
    resumed.log_hyperparams({"optimizer": {"lr": 0.1}, "resume": True})  # a changed value is kept as it was
    assert resumed.run_id == first.run_id
    resumed.log_metrics({"train/loss_task": 0.5}, step=1)
    (tmp_path / "run" / "metrics.json").write_text("{}")
    resumed.close_run(tmp_path / "run")
    run = mlflow.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "delia-seed3"
    assert [m.step for m in mlflow.get_metric_history(run.info.run_id, "train/loss_task")] == [0, 1]
    assert logger().run_id != first.run_id  # a finished run is never continued
