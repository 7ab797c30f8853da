"""End to end on tiny_random: delia-train writes every output; delia-eval re-evaluates; the CLI fails cleanly."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

from delia.infra.checkpoint_io import load_checkpoint_file
from delia.infra.errors import DeliaError
from delia.recipe import train
from tests.cli_batch import run_commands
from tests.conftest import TINY, compose_train

METRICS = [
    "eval/loss",
    "seen_wordings/format_acc",
    "seen_wordings/label_acc",
    "unseen_wordings/format_acc",
    "unseen_wordings/label_acc",
    "negative/format_rate",
]


def test_run_writes_metrics_adapter_checkpoint_logs_and_config(tiny_run) -> None:
    run_dir, metrics = tiny_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert set(METRICS) <= set(saved["metrics"]) and saved["baseline"] == "delia"
    assert saved["metrics"]["train/diverse_examples"] == saved["metrics"]["train/downstream_examples"] == 8
    assert 0 < metrics["eval/loss"] < 20
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "delia_adapter.json"} <= {
        p.name for p in (run_dir / "adapter").iterdir()
    }
    assert (run_dir / "config.yaml").is_file() and (run_dir / "samples.json").is_file()
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    assert any(row.get("train/loss_task") for row in rows) and any(
        row.get("train/loss_diverse") for row in rows
    )


def test_checkpoint_holds_only_trainable_weights(tiny_run) -> None:
    run_dir, _ = tiny_run
    ckpt = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    keys = list(ckpt["state_dict"])
    assert keys and all("lora_" in k or "trainable_tokens" in k for k in keys)
    assert "optimizer_states" in ckpt and ckpt["global_step"] == 2


def test_delia_eval_reproduces_the_training_metrics(tiny_run) -> None:
    from delia.cli.eval import evaluate_run

    run_dir, metrics = tiny_run
    cfg = compose_train([f"run_dir={run_dir}"], name="eval_run")
    cfg.eval = compose_train(TINY).eval
    again = evaluate_run(cfg)
    assert again["eval/loss"] == pytest.approx(metrics["eval/loss"], rel=1e-4)
    assert again["unseen_wordings/format_acc"] == metrics["unseen_wordings/format_acc"]
    assert json.loads((run_dir / "metrics.json").read_text())["evaluated_by"] == "delia-eval"
    # what evaluation does not recompute is kept from the training run
    assert again["retention/probe_acc_change"] == metrics["retention/probe_acc_change"]
    assert again["train/seen_task_examples"] == metrics["train/seen_task_examples"]


def test_finished_run_dir_is_refused_unless_overwrite(tiny_run) -> None:
    run_dir, _ = tiny_run
    with pytest.raises(DeliaError, match="already holds a finished run"):
        train(compose_train(TINY, run_dir=run_dir))


def test_resume_auto_skips_a_finished_run_and_keeps_its_files(tiny_run) -> None:
    """A relaunched sweep (resume=auto) returns a finished job's metrics and writes nothing there."""
    run_dir, metrics = tiny_run
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    again = train(compose_train([*TINY, "resume=auto"], run_dir=run_dir))
    assert again == json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert again["eval/loss"] == metrics["eval/loss"]
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


def test_wandb_logger_works_offline_without_a_key(tiny_cfg) -> None:
    cfg = tiny_cfg("logger=wandb", "callbacks=none", "eval.generate=false")
    train(cfg)
    runs = list((Path(cfg.paths.run_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_delia_sample_fills_the_cache_that_training_reuses(tmp_path: Path) -> None:
    env_cache = tmp_path / "cache"
    env = {**os.environ, "DELIA_CACHE_DIR": str(env_cache), "DELIA_OUTPUT_ROOT": str(tmp_path / "outputs")}
    env.pop("DELIA_DEBUG", None)
    sample, again = run_commands(  # both commands in one child process, one after the other
        [
            ("delia.cli.sample", [*TINY, "diverse.ratio=2", "hydra.run.dir=sample_run"]),
            ("delia.cli.train", [*TINY, "diverse.ratio=2", "eval.generate=false", "hydra.run.dir=run"]),
        ],
        tmp_path,
        env,
    )
    assert sample["returncode"] == 0, sample["stderr"][-2000:]
    assert "16 diverse samples ready" in sample["stdout"]  # 8 downstream examples x ratio 2
    filled = re.search(r"diverse cache (\S+): 0 of 16 samples present", sample["stdout"] + sample["stderr"])
    assert filled and len((Path(filled[1]) / "samples.jsonl").read_text().splitlines()) == 16
    assert again["returncode"] == 0, again["stderr"][-2000:]
    # the training run reuses that cache entry (and samples its held-out retention slice apart)
    assert (
        f"diverse cache {filled[1]}: 16 of 16 samples present, 0 to sample"
        in again["stdout"] + again["stderr"]
    )


def test_a_run_reports_step0_and_the_change(tiny_run) -> None:
    _, metrics = tiny_run
    for name in ("repr/l2_layer1", "repr/rel_l2_layer1", "repr/desc_l2_layer1"):
        assert metrics[f"{name}_change"] == pytest.approx(metrics[name] - metrics[f"{name}_step0"])
