"""Every baseline and ablation is a config choice with a real implementation; nonsense is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from delia import baselines
from tests.conftest import TINY, compose_train


def _run(tmp_path: Path, *overrides: str) -> tuple[Path, dict]:
    from delia.recipe import train

    run_dir = tmp_path / "run"
    metrics = train(compose_train([*TINY, "logger=csv", *overrides], run_dir=run_dir))
    return run_dir, metrics


def test_disperse_merge_trains_each_portion_and_saves_one_merged_adapter(tmp_path: Path) -> None:
    from delia.baselines import prompted_task as build_task
    from delia.eval.evaluate import eval_loss
    from delia.model import load_adapter

    run_dir, metrics = _run(tmp_path, "baseline=disperse_merge", "trainer.max_steps=4")
    assert (run_dir / "portions" / "0" / baselines.PORTION_FILE).is_file()
    assert (run_dir / "portions" / "1" / baselines.PORTION_FILE).is_file()
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["trainable_token_indices"]
    assert not [p for p in (run_dir / "adapter").iterdir() if p.is_dir()]  # the merged adapter alone
    assert json.loads((run_dir / "metrics.json").read_text())["baseline"] == "disperse_merge"
    assert metrics["train/seen_task_examples"] == 4 * compose_train(TINY).data.batch_size  # both portions
    cfg = compose_train([*TINY, "baseline=disperse_merge"])
    model, tok = load_adapter(run_dir / "adapter", cfg.model, cfg.paths.cache_dir)
    loss = eval_loss(model, tok, build_task(cfg)["seen_wordings"], cfg.data.max_length, cfg.eval.batch_size)
    assert loss == pytest.approx(metrics["eval/loss"], rel=1e-6)
    portion0 = load_file(str(run_dir / "portions" / "0" / baselines.PORTION_FILE))
    saved = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    key = next(k for k in portion0 if "q_proj.lora_B" in k)
    assert not torch.equal(saved[key], portion0[key])  # not portion 0's adapter
