"""Every option of every config group runs a tiny job to its metrics: composing is not enough.

One case per ``group=option`` of conf/: the tiny base (tiny_random, debug=fast, no generation, no
retention) with that option and what it needs to run here (a data file the test writes, the steps the
protocol derives), through ``delia.recipe.train``. An option that another test already runs to the end is
skipped here, naming that test; one that needs a GPU or a model hub is skipped with that reason. A case
whose composed config is one this module already ran (a method that is a baseline and an ablation,
a group's default option) reuses that run's metrics instead of training it again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from delia.cli import CONF_DIR, group_options
from tests.conftest import TINY, compose_train
from tests.unit.dataset.test_translation import write_jsonl

BASE = [*TINY, "eval.generate=false", "retention.enabled=false"]
OPTIONS = [
    (group, option) for group, options in sorted(group_options(CONF_DIR).items()) for option in options
]
# methods last: each is a baseline and an ablation, whose cases have run by then
OPTIONS.sort(key=lambda case: case[0] == "method")

SWEEPS, TRAIN = "tests/runs/test_sweeps.py", "tests/runs/test_train.py"
RUN_ELSEWHERE = {  # (group, option) -> the test that runs it to the end
    ("logger", "wandb"): f"{TRAIN}::test_wandb_logger_works_offline_without_a_key",
    ("logger", "many"): f"{SWEEPS}::test_wandb_offline_run_holds_config_tags_and_generations",
    ("logger", "mlflow"): f"{SWEEPS} (the ddp_run fixture) and tests/runs/test_dashboard.py",
    ("callbacks", "none"): f"{TRAIN}::test_wandb_logger_works_offline_without_a_key",
    ("callbacks", "buffering"): "tests/runs/test_buffering.py",
    ("baseline", "common_it"): "tests/runs/test_report.py (a baseline=delia,common_it sweep)",
    ("method", "common_it"): "tests/runs/test_report.py (as baseline=common_it: the same config)",
    ("baseline", "disperse_merge"): "tests/runs/test_baselines.py",
    (
        "method",
        "disperse_merge",
    ): "tests/runs/test_baselines.py (as baseline=disperse_merge: the same config)",
    ("baseline", "dipmt"): "tests/runs/test_translation.py (on a translation task)",
    ("method", "dipmt"): "tests/runs/test_translation.py (as baseline=dipmt: the same config)",
    ("ablation", "no_task_diversification"): "tests/runs/test_dashboard.py (an ablation sweep)",
    (
        "method",
        "delia_no_task_diversification",
    ): "tests/runs/test_dashboard.py (as the ablation: the same config)",
    ("dataset", "jsonl"): "tests/runs/test_chat_format.py (a chat file in the authors' layout)",
    ("dataset", "wmt21_is_en"): "tests/runs/test_translation.py (a local pairs file)",
    ("trainer", "ddp_sim"): f"{SWEEPS}::test_ddp_sim_has_the_metrics_of_a_single_process_run",
    ("hparams_search", "optuna"): f"{SWEEPS}::test_optuna_search_optimises_the_named_metric",
    **{
        (group, name): "tests/runs/test_experiment_configs.py (every experiment config to its first step)"
        for group, name in OPTIONS
        if group == "experiment"
    },
}
NOT_HERE = {  # (group, option) -> why no test runs it on this machine
    ("trainer", "ddp"): "GPUs, launched by torchrun/srun (Lightning would relaunch the test process)",
    ("trainer", "fsdp"): "GPUs, launched by torchrun/srun; tests/unit/test_config.py builds its strategy",
    ("model", "smollm2_135m"): "the embedded model takes minutes for two steps on this CPU; "
    "tests/runs/test_real_model.py loads it and generates",
    ("model", "smollm2_135m_hub"): "needs the model hub",
    ("model", "llama2_7b_chat"): "needs the model hub (a gated model)",
    ("model", "gemma_7b_it"): "needs the model hub (a gated model)",
}
ON_GPU_ONLY = {("trainer", "gpu"), ("trainer", "ddp_spawn")}  # accelerator=gpu: run where there is one


def needs(group: str, option: str, data_dir: Path) -> list[str]:
    """What an option needs to run a tiny job here (beyond the option itself)."""
    if (group, option) == ("dataset", "wmt21_en_is"):
        path = write_jsonl(data_dir / "en_is.jsonl")
        return [f"dataset.path={path}", "dataset.train_size=8", "dataset.eval_size=4"]
    if (group, option) == (
        "protocol",
        "exposure",
    ):  # debug=fast fixes the steps: let the protocol derive them
        return ["trainer.max_steps=null", "trainer.val_check_interval=null", "checkpoint_every_n_steps=null"]
    if (group, option) == ("debug", "overfit"):  # its 60 steps are what the option is for, not what must run
        return ["trainer.max_steps=4", "trainer.val_check_interval=4"]
    return []


def case_overrides(group: str, option: str, data_dir: Path) -> list[str]:
    """The base without its own choice of this group (TINY picks model and debug), the option, its needs."""
    base = [o for o in BASE if o.partition("=")[0] != group]
    return [*base, f"{group}={option}", *needs(group, option, data_dir)]


def config_key(overrides: list[str]) -> str:
    """The composed config as text, interpolations unresolved (the run dir among them): equal keys are
    the same job."""
    return OmegaConf.to_yaml(compose_train(overrides))


@pytest.fixture(scope="module")
def finished() -> dict[str, dict]:
    """The metrics of each distinct config this module has run, by :func:`config_key`."""
    return {}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_runs_a_tiny_job_to_its_metrics(
    group: str, option: str, tmp_path: Path, finished: dict[str, dict]
) -> None:
    from delia.recipe import train

    if (group, option) in RUN_ELSEWHERE:
        pytest.skip(f"run to the end by {RUN_ELSEWHERE[(group, option)]}")
    if (group, option) in NOT_HERE:
        pytest.skip(NOT_HERE[(group, option)])
    if (group, option) in ON_GPU_ONLY and not torch.cuda.is_available():
        pytest.skip("accelerator=gpu: needs a GPU")
    overrides = case_overrides(group, option, tmp_path)
    key = config_key(overrides)
    if key not in finished:
        run_dir = tmp_path / "run"
        finished[key] = train(compose_train(overrides, run_dir=run_dir))
        saved = json.loads((run_dir / "metrics.json").read_text())
        assert set(saved["metrics"]) == set(finished[key])
        assert (run_dir / "adapter" / "adapter_config.json").is_file()
    metrics = finished[key]
    assert math.isfinite(metrics["eval/loss"])
    if compose_train(overrides).baseline.train:  # ctg evaluates the untrained model
        assert metrics["train/seen_task_examples"] > 0
