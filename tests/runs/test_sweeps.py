"""Sweeps and distributed runs: ddp_sim, the joblib launcher, the GPU pool, refusals, wandb, optuna."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from delia.infra.errors import DeliaError
from tests.cli_batch import run_batch
from tests.conftest import TINY, compose_train

FAST = [*TINY, "eval.generate=false"]


def run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "delia.cli.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    result = run([*FAST, "trainer=ddp_sim", "logger=mlflow", "hydra.run.dir=ddp"], root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "ddp"


def test_ddp_sim_has_the_metrics_of_a_single_process_run(ddp_run: Path, tmp_path: Path) -> None:
    from delia.recipe import train

    single = train(compose_train(FAST, run_dir=tmp_path / "single"))
    assert set(metrics(ddp_run)) == set(single)
    assert single["train/seen_task_examples"] + single["train/seen_diverse_examples"] == 16  # one rank


def test_ddp_sim_ranks_see_their_own_shards_and_the_ratio_holds_globally(ddp_run: Path) -> None:
    m = metrics(ddp_run)
    # 2 steps x batch 8 x 2 ranks = 32 examples = two whole passes over 8 task + 8 diverse
    assert m["train/seen_task_examples"] + m["train/seen_diverse_examples"] == 32
    assert m["train/seen_diverse_examples"] == m["train/seen_task_examples"] * 1.0


def test_ddp_sim_only_rank_zero_writes(ddp_run: Path) -> None:
    rows = [r for r in (ddp_run / "csv" / "metrics.csv").read_text().splitlines()[1:] if r]
    header = (ddp_run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    step_col, loss_col = header.index("step"), header.index("train/loss")
    train_steps = [r.split(",")[step_col] for r in rows if r.split(",")[loss_col]]
    assert train_steps == ["0", "1"]  # one row per step: not one per rank
    assert len(list(ddp_run.rglob("metrics.json"))) == 1
    assert len(list((ddp_run / "checkpoints").iterdir())) == 1


def test_ddp_sim_ranks_and_the_job_log_to_one_mlflow_run(ddp_run: Path) -> None:
    from mlflow.tracking import MlflowClient

    pointer = json.loads((ddp_run / "mlflow.json").read_text())
    mlflow = MlflowClient(pointer["tracking_uri"])
    run = mlflow.get_run(pointer["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "delia-seed42"
    steps = [m.step for m in mlflow.get_metric_history(run.info.run_id, "train/loss_task")]
    assert steps == [0, 1]  # logged once, by the rank-0 training process
    assert run.data.metrics["eval/loss"] == pytest.approx(metrics(ddp_run)["eval/loss"])  # by the job


def test_adapter_saved_under_ddp_reloads(ddp_run: Path, session_cache: Path) -> None:
    from delia.baselines import prompted_task as build_task
    from delia.dataset import loss_split
    from delia.eval.evaluate import eval_loss
    from delia.model import load_adapter

    cfg = compose_train(FAST)
    model, tok = load_adapter(ddp_run / "adapter", cfg.model, session_cache)
    loss = eval_loss(model, tok, loss_split(build_task(cfg)), cfg.data.max_length, cfg.eval.batch_size)
    assert loss == pytest.approx(metrics(ddp_run)["eval/loss"], rel=1e-5)


def test_joblib_launcher_runs_two_jobs_in_parallel(tmp_path: Path) -> None:
    result = run(
        [
            "-m",
            *FAST,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "seed=1,2",
            "hydra.sweep.dir=sweep",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [tmp_path / "sweep" / str(i) for i in range(2)]
    spans = []
    for job in jobs:
        assert metrics(job)["eval/loss"] > 0
        first = (job / "train.log").read_text().splitlines()[0][1:24]
        spans.append(
            (
                datetime.strptime(first, "%Y-%m-%d %H:%M:%S,%f").timestamp(),
                (job / "metrics.json").stat().st_mtime,
            )
        )
    (a_start, a_end), (b_start, b_end) = spans
    assert a_start < b_end and b_start < a_end  # the two jobs overlapped in time


TAKE_GPU = """
import json, sys, time
from pathlib import Path
from delia.infra import launch
from delia.infra.errors import DeliaError
try:
    print(json.dumps(launch.acquire_gpus(1, 2, Path(sys.argv[1]))), flush=True)
    time.sleep(8)  # hold the GPU while the other workers try
except DeliaError as err:
    print(json.dumps(str(err)), flush=True)
"""


def test_gpu_pool_gives_each_concurrent_job_its_own_gpu(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", TAKE_GPU, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    answers = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.wait(timeout=60)
    gpus = sorted(a[0] for a in answers if isinstance(a, list))
    errors = [a for a in answers if isinstance(a, str)]
    assert gpus == [0, 1]
    assert len(errors) == 1 and "only 0 of launcher.num_gpus=2 GPUs are free" in errors[0]


WANDB_RUN = [*TINY, "logger=many", "hydra.run.dir=wb"]
OPTUNA_SEARCH = [
    "hparams_search=optuna",
    *FAST,
    "hydra.sweeper.n_trials=2",
    "optimized_metric=eval/loss",
    "hydra.sweeper.direction=minimize",
    "hydra.sweep.dir=search",
]


@pytest.fixture(scope="module")
def in_one_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """The wandb run and the optuna search by delia-train's main(), in one child process (one torch import)."""
    root = tmp_path_factory.mktemp("loggers_and_search")
    results = run_batch("delia.cli.train", [WANDB_RUN, OPTUNA_SEARCH], root, dict(os.environ))
    return root, dict(zip(("wandb", "optuna"), results, strict=True))


def test_wandb_offline_run_holds_config_tags_and_generations(in_one_process) -> None:
    root, results = in_one_process
    assert results["wandb"]["returncode"] == 0, results["wandb"]["stderr"][-3000:]
    assert "upload with: wandb sync" in results["wandb"]["stdout"]
    [offline] = (root / "wb" / "wandb").glob("offline-run-*")
    data = next(offline.glob("run-*.wandb")).read_bytes()
    for text in (b"special_token", b"sep_format", b"tiny_random", b"seed42"):
        assert text in data, text
    assert list(offline.rglob("generations*.table.json"))
    assert list((root / "wb" / "tensorboard" / "delia-seed42").glob("events.out.tfevents.*"))
    assert (root / "wb" / "csv" / "metrics.csv").is_file()


def test_optuna_search_optimises_the_named_metric(in_one_process) -> None:
    root, results = in_one_process
    assert results["optuna"]["returncode"] == 0, results["optuna"]["stderr"][-3000:]
    best = yaml.safe_load((root / "search" / "optimization_results.yaml").read_text())
    losses = [metrics(root / "search" / str(i))["eval/loss"] for i in range(2)]
    assert best["best_value"] == pytest.approx(min(losses))
    assert set(best["best_params"]) == {"optimizer.lr", "peft.r", "diverse.ratio", "schedule"}


def test_submitit_local_launcher_runs_a_job(tmp_path: Path) -> None:
    result = run(
        [
            "-m",
            *FAST,
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "hydra.sweep.dir=local",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics(tmp_path / "local" / "0")["eval/loss"] > 0


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_relaunching_strategy_given_as_a_string_is_refused_in_a_multirun(strategy: str) -> None:
    from delia.infra.launch import refuse_relaunch_in_multirun

    cfg = compose_train([f"trainer.strategy={strategy}", "trainer.devices=2"])
    with pytest.raises(DeliaError, match=f"trainer={strategy} inside a Hydra multirun"):
        refuse_relaunch_in_multirun(cfg, "MULTIRUN")
    refuse_relaunch_in_multirun(cfg, "RUN")  # a single run may use it (torchrun or Lightning's relaunch)
    spawn = compose_train(["trainer=ddp_sim"])
    refuse_relaunch_in_multirun(spawn, "MULTIRUN")  # start_method=spawn: no relaunch
