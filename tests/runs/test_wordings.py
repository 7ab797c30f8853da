"""Issue 28 end to end: DELIA on one's own chat file (the authors' layout, one instruction shared by every
row, found automatically, wordings from the rules), with the pool's measures and the seen / unseen /
negative splits in metrics.json; and every pool of experiment=wordings_cpu starts on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, compose_train
from tests.runs.test_experiment_configs import shrunk
from tests.unit.dataset.wordings.chat_files import SEP_OPTIONS, authors_chat_file

POOL_KEYS = ("kept", "distinct", "distinct2", "mean_overlap", "rows_matched", "rejected_near_duplicate")
SPLIT_KEYS = (
    "seen_wordings/format_acc",
    "seen_wordings/label_acc",
    "unseen_wordings/format_acc",
    "unseen_wordings/label_acc",
    "negative/format_rate",
)


def test_delia_on_ones_own_chat_file_with_rule_wordings(tmp_path: Path) -> None:
    from delia.recipe import train

    data = authors_chat_file(tmp_path / "own.jsonl")
    overrides = [
        *TINY,
        "dataset=jsonl",
        f"dataset.path={data}",
        *SEP_OPTIONS,
        "dataset.negative_instruction='Do NOT use the <sep> format.'",
        "wordings=rules",
        "dataset.train_size=null",  # every row: 36 to train, 4 to evaluate (debug=fast keeps 2 steps)
        "dataset.eval_size=null",
        "eval.max_new_tokens=8",
        "retention.enabled=false",
    ]
    run_dir = tmp_path / "run"
    metrics = train(compose_train(overrides, run_dir=run_dir))
    saved = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert set(saved) == set(metrics)
    assert saved["wordings/rows_matched"] == saved["wordings/rows"] == 40  # found automatically, every row
    for key in POOL_KEYS:
        assert f"wordings/{key}" in saved, key
    assert saved["wordings/kept"] > saved["wordings/trained"] >= 2  # some held out, several trained
    for key in SPLIT_KEYS:
        assert 0.0 <= saved[key] <= 1.0, key
    pool = json.loads((run_dir / "wordings.json").read_text())
    assert "the user turns share" in pool["how"]
    assert {w["share"] for w in pool["pool"]} == {"train", "heldout"}


def sweep_pools() -> list[str]:
    from omegaconf import OmegaConf

    from delia.cli import CONF_DIR

    params = OmegaConf.load(Path(CONF_DIR) / "experiment" / "wordings_cpu.yaml").hydra.sweeper.params
    return str(params.wordings).split(",")


@pytest.mark.parametrize("pool", sweep_pools())
def test_each_pool_of_the_wordings_experiment_starts_on_the_tiny_model(pool: str, tmp_path: Path) -> None:
    from delia.recipe import train

    if pool == "none":  # the experiment's own default: the config that test runs
        assert list(compose_train(["experiment=wordings_cpu"]).wordings.sources) == ["none"]
        pytest.skip("run to its first steps by tests/runs/test_experiment_configs.py[wordings_cpu]")
    overrides = [
        *shrunk("wordings_cpu", tmp_path),
        f"wordings={pool}",
        "wordings.paraphrase.n=4",
        "wordings.paraphrase.max_new_tokens=8",
    ]
    cfg = compose_train(overrides, run_dir=tmp_path / "run")
    assert (cfg.baseline.name, cfg.protocol.task_epochs, cfg.diverse.sampler) == ("delia", 3, "llamacpp")
    metrics = train(cfg)
    assert metrics["protocol/steps"] >= 1 and metrics["train/seen_task_examples"] >= 1
    assert metrics["wordings/kept_one"] == 1
    if pool == "one":
        assert metrics["wordings/kept"] == metrics["wordings/trained"] == 1
    if pool == "rules":
        assert metrics["wordings/kept_rules"] >= 1
    if pool == "paraphrase":
        assert metrics["wordings/candidates"] == 1 + 4  # the paraphraser wrote every one asked for
