"""Every experiment config (conf/experiment/) starts: on tiny_random, shrunk, it trains its first steps.

Each config keeps its own policies: the query set (``diverse.queries``, ``self`` stays self),
``diverse.allow_repeats``, the protocol (the exposure protocol derives the steps, as at full size) and
its schedule, callbacks and baseline. Only the model (tiny_random: the paper configs name hub models),
the sizes (train/eval sizes, ratio, new tokens, batch sizes, sequence length, warmup, checkpoint
interval) and, without a GPU, the accelerator are changed. The CPU sweeps that
tests/unit/test_experiments.py already runs to the end are skipped here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from delia import diverse
from delia.cli import CONF_DIR, group_options
from delia.data.mixing import diverse_count, diverse_ratio
from delia.diverse.queries import check_enough
from tests.conftest import compose_train
from tests.unit.dataset.test_translation import write_jsonl

EXPERIMENTS = group_options(CONF_DIR)["experiment"]
RUN_ELSEWHERE = {"ratio_cpu", "samples_cpu"}  # tests/unit/test_experiments.py runs both sweeps to the end
SIZES = [
    "model=tiny_random",
    "trainer.enable_progress_bar=false",
    "dataset.train_size=4",
    "diverse.max_new_tokens=8",
    "diverse.batch_size=8",
    "diverse.self_queries.max_new_tokens=8",
    "data.batch_size=2",
    "data.max_length=384",
    "eval.generate=false",
    "eval.max_new_tokens=8",
    "eval.batch_size=4",
    "retention.enabled=false",
    "lr_scheduler.num_warmup_steps=0",
    "checkpoint_every_n_steps=null",
]


def shrunk(experiment: str, data_dir: Path) -> list[str]:
    """The experiment's overrides at tiny size; its query, repeat and protocol policies untouched."""
    full = compose_train([f"experiment={experiment}"])
    overrides = [f"experiment={experiment}", *SIZES]
    if full.diverse.name != "none" and float(full.diverse.ratio) > 0:
        overrides.append("diverse.ratio=1")
    if full.dataset.kind == "sep_format":
        overrides += ["dataset.eval_size=2", "dataset.heldout_size=2", "dataset.negative_size=2"]
    if full.dataset.kind == "translation":  # offline: a local pairs file instead of the hub
        overrides += [f"dataset.path={write_jsonl(data_dir / 'pairs.jsonl')}", "dataset.eval_size=4"]
    if "buffering" in full.callbacks:
        overrides += ["callbacks.buffering.k=2", "callbacks.buffering.every_n_steps=1"]
    if full.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        overrides += ["trainer.accelerator=cpu", "trainer.precision=32-true"]
    return overrides


def supply_at_full_size(experiment: str) -> None:
    """What the tiny run cannot show: at the config's own size its query policy gives every diverse sample
    a query (a one-line refusal otherwise; ``self``: the model writes as many as needed)."""
    cfg = compose_train([f"experiment={experiment}"])
    n = diverse_count(int(cfg.dataset.train_size), diverse_ratio(cfg.diverse))
    if n and cfg.diverse.queries != "self":
        order = diverse.query_order(
            diverse.load_queries(str(cfg.diverse.queries)), int(cfg.diverse.seed), False
        )
        check_enough(n, order, bool(cfg.diverse.allow_repeats))


def policies(cfg: DictConfig) -> dict[str, object]:
    """What the shrinking must keep."""
    return {
        "queries": cfg.diverse.queries,
        "allow_repeats": cfg.diverse.allow_repeats,
        "diverse": cfg.diverse.name,
        "protocol": cfg.protocol.name,
        "task_epochs": cfg.protocol.task_epochs,
        "max_steps": cfg.trainer.max_steps,
        "schedule": cfg.schedule.name,
        "baseline": cfg.baseline.name,
        "callbacks": sorted(cfg.callbacks),
    }


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_trains_its_first_steps_on_the_tiny_model(
    experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delia.recipe import train

    if experiment in RUN_ELSEWHERE:
        pytest.skip("run to the end on tiny_random by tests/unit/test_experiments.py (its sweep)")
    supply_at_full_size(experiment)
    overrides = shrunk(experiment, tmp_path)
    cfg = compose_train(overrides, run_dir=tmp_path / "run")
    assert policies(cfg) == policies(compose_train([f"experiment={experiment}"]))
    protocol = "exposure" if cfg.trainer.max_steps is None else "compute"  # as the config says
    written: list[int] = []
    real = diverse.self_written_queries

    def spy(model, tokenizer, diverse_cfg, n, *rest):
        written.append(n)
        return real(model, tokenizer, diverse_cfg, n, *rest)

    monkeypatch.setattr(diverse, "self_written_queries", spy)
    metrics = train(cfg)
    assert metrics["protocol/name"] == protocol
    assert metrics["protocol/steps"] >= 1
    assert metrics["train/seen_task_examples"] >= 1
    assert metrics["train/diverse_examples"] == (4 if cfg.diverse.name != "none" else 0)
    assert bool(written) == (cfg.diverse.queries == "self")  # the model wrote the queries it answered
