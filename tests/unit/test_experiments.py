"""The CPU reproduction sweeps (``experiment=ratio_cpu``, ``experiment=samples_cpu``) as tiny two-job runs.

Each sweep keeps its experiment config (exposure protocol, callbacks, sweep layout) and shrinks only the
model (tiny_random) and the sizes; both run by ``delia-train``'s own ``main()`` in one process
(tests/cli_batch.py), then ``delia-report`` collects each sweep and draws its figure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from delia.diverse.cache import cache_key
from delia.tools.report import collect, write_report
from tests.cli_batch import run_batch
from tests.conftest import REPO, compose_train

RESULTS = REPO / "notebooks" / "results"

TINY_SWEEP = [
    "-m",
    "model=tiny_random",
    "debug=fast",
    "trainer.max_steps=null",  # debug=fast fixes 2 steps; the experiment's exposure protocol decides here
    "trainer.val_check_interval=null",
    "checkpoint_every_n_steps=null",
    "trainer.enable_progress_bar=false",
    "dataset.eval_size=4",
    "dataset.heldout_size=4",
    "dataset.negative_size=2",
    "protocol.task_epochs=1",
    "data.batch_size=4",
    "seed=1",
]
SWEEPS = {
    "ratio_cpu": [
        "experiment=ratio_cpu",
        "dataset.train_size=4",
        "diverse.ratio=0,2",
        "callbacks.buffering.every_n_steps=2",
        "callbacks.buffering.k=2",
    ],
    "samples_cpu": ["experiment=samples_cpu", "method=delia", "diverse.ratio=1", "dataset.train_size=4,8"],
}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> dict[str, Path]:
    """Both tiny sweeps, each in its own sweep dir."""
    work = tmp_path_factory.mktemp("experiments")
    dirs = {name: work / name for name in SWEEPS}
    cases = [[*TINY_SWEEP, *args, f"hydra.sweep.dir={dirs[name]}"] for name, args in SWEEPS.items()]
    env = {**os.environ, "DELIA_OUTPUT_ROOT": str(work)}
    results = run_batch("delia.cli.train", cases, work, env, timeout=900)
    for result in results:
        assert result["returncode"] == 0, result["stdout"][-2000:] + result["stderr"][-3000:]
    return dirs


def sampling_key(cfg: DictConfig, part: str) -> str:
    """The sample cache's key for one part (diverse answers, held-out retention slice), model aside."""
    return cache_key({}, [], OmegaConf.select(cfg, part), heldout=part != "diverse")


@pytest.mark.parametrize("experiment", ["sep_cpu", "ratio_cpu", "samples_cpu"])
def test_an_experiment_draws_the_samples_its_committed_jobs_trained_on(experiment: str) -> None:
    """A rerun or ``resume=auto`` of a committed sweep must sample what its jobs did, whatever the CPU
    default sampler is now: the settings that key the cache (sampler and compute type included) are the
    committed jobs' own, for the diverse answers and (where retention ran) the held-out retention slice."""
    cfg = compose_train([f"experiment={experiment}"])
    committed = sorted((RESULTS / experiment).glob("**/config.yaml"))
    assert committed, f"no committed jobs under {RESULTS / experiment}"
    for path in committed:
        job = OmegaConf.load(path)
        sampled = ["diverse", "retention.sampling"] if job.retention.enabled else ["diverse"]
        for part in sampled:
            assert sampling_key(cfg, part) == sampling_key(job, part), f"{path}: {part}"


def job_metrics(sweep: Path) -> list[dict]:
    return [json.loads((sweep / str(i) / "metrics.json").read_text())["metrics"] for i in range(2)]


def test_ratio_sweep_holds_task_exposure_equal_and_logs_the_buffering_measures(sweeps) -> None:
    no_diverse, ratio_two = job_metrics(sweeps["ratio_cpu"])
    assert no_diverse["protocol/name"] == ratio_two["protocol/name"] == "exposure"
    assert no_diverse["protocol/task_exposure"] == ratio_two["protocol/task_exposure"] == 1.0
    assert (no_diverse["train/diverse_examples"], ratio_two["train/diverse_examples"]) == (0, 8)
    assert (no_diverse["protocol/steps"], ratio_two["protocol/steps"]) == (1, 3)  # (1 + ratio) x 4 / 4
    for m in (no_diverse, ratio_two):
        assert 0.0 < m["buffer/diverse_cancellation"] <= 1.0 + 1e-6
        assert 0.0 <= m["buffer/task_kept_step0"] <= 1.0 + 1e-6
        assert m["buffer/measurements"] >= 2  # step 0 and the end at least


def test_ratio_sweep_report_plots_against_the_ratio(sweeps, tmp_path: Path) -> None:
    report = collect(sweeps["ratio_cpu"])
    assert len(report.finished) == 2
    written, _ = write_report(report, tmp_path)
    assert "metric_vs_ratio.png" in {p.name for p in written}
    table = (tmp_path / "report.md").read_text()
    assert "buffer/diverse_cancellation" in table


def test_samples_sweep_trains_each_size_under_the_same_protocol(sweeps, tmp_path: Path) -> None:
    small, large = job_metrics(sweeps["samples_cpu"])
    assert (small["train/downstream_examples"], large["train/downstream_examples"]) == (4, 8)
    assert small["protocol/task_exposure"] == large["protocol/task_exposure"] == 1.0
    assert "seen_wordings/format_acc" not in small  # the experiment turns generation off
    for m in (small, large):
        assert m["repr/rel_l2_layer1_step0"] > 0 and "repr/rel_l2_layer1_change" in m
    written, _ = write_report(collect(sweeps["samples_cpu"]), tmp_path)
    assert "metric_vs_train_size.png" in {p.name for p in written}
