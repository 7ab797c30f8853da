"""Every option of every config group composes, resolves and passes validation (or fails clearly)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from delia.cli import CONF_DIR
from delia.config import validate
from delia.errors import DeliaError
from tests.conftest import compose_train

GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir())
OPTIONS = [(group, p.stem) for group in GROUPS for p in sorted((Path(CONF_DIR) / group).glob("*.yaml"))]
# options that are refused alone: (the refusal, what makes them valid)
TRANSLATION = ["dataset=wmt21_is_en", "dataset.path=train.jsonl"]
NEEDS_INPUT = {
    ("dataset", "jsonl"): ("dataset.path", ["dataset.path=train.jsonl"]),
    ("baseline", "dipmt"): ("not a translation task", TRANSLATION),
    ("method", "dipmt"): ("not a translation task", TRANSLATION),
}


def test_groups_required_by_the_design_exist() -> None:
    required = {
        "model",
        "dataset",
        "diverse",
        "peft",
        "schedule",
        "baseline",
        "ablation",
        "trainer",
        "logger",
        "experiment",
        "debug",
    }
    assert required <= set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_validates(group: str, option: str, tmp_path: Path) -> None:
    cfg = compose_train([f"{group}={option}"], run_dir=tmp_path)
    if (group, option) in NEEDS_INPUT:
        refusal, fix = NEEDS_INPUT[(group, option)]
        with pytest.raises(DeliaError, match=refusal):
            validate(cfg)
        cfg = compose_train([f"{group}={option}", *fix], run_dir=tmp_path)
    validate(cfg)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    if "FSDP" in str(cfg.trainer.get("strategy")):  # needs a GPU: build the strategy alone
        assert instantiate(cfg.trainer.strategy) is not None
    else:
        trainer = instantiate(cfg.trainer, accelerator="cpu", precision="32-true", logger=False)
        assert trainer.max_steps == cfg.trainer.max_steps
    for conf in [*cfg.callbacks.values(), *cfg.logger.values()]:
        assert instantiate(conf) is not None


def test_baselines_and_ablations_change_what_they_name(tmp_path: Path) -> None:
    delia = compose_train([], run_dir=tmp_path)
    common = compose_train(["baseline=common_it"], run_dir=tmp_path)
    no_div = compose_train(["ablation=no_diverse_data"], run_dir=tmp_path)
    no_task = compose_train(["ablation=no_task_diversification"], run_dir=tmp_path)
    assert delia.diverse.ratio > 0 and delia.dataset.diversify_instructions
    assert common.diverse.ratio == 0 and not common.dataset.diversify_instructions
    assert no_div.diverse.ratio == 0 and no_div.dataset.diversify_instructions
    assert no_task.diverse.ratio > 0 and not no_task.dataset.diversify_instructions


def test_paper_scale_is_one_override_away(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=paper_sep_smollm2"], run_dir=tmp_path)
    assert (cfg.diverse.ratio, cfg.dataset.train_size, cfg.optimizer.lr, cfg.peft.r) == (260, 100, 2e-4, 16)
    assert compose_train(["diverse.ratio=260"], run_dir=tmp_path).diverse.ratio == 260


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("diverse.ratio=-1", "diverse.ratio=-1"),
        ("trainer.max_steps=0", "trainer.max_steps"),
        ("data.on_overlength=explode", "data.on_overlength"),
        ("schedule=two_stage schedule.stage1_fraction=1.5", "stage1_fraction"),
        ("schedule=weighted schedule.lambda_shape=wavy", "lambda_shape"),
        ("dataset.train_size=0", "dataset.train_size"),
        ("diverse.top_p=0", "diverse.top_p"),
    ],
)
def test_bad_options_are_refused_before_heavy_work(override: str, message: str, tmp_path: Path) -> None:
    cfg = compose_train(override.split(), run_dir=tmp_path)
    with pytest.raises(DeliaError, match=message):
        validate(cfg)
