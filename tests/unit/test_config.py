"""Every option of every config group composes, resolves and passes validation (or fails clearly)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from delia import protocol
from delia.cli import CONF_DIR
from delia.config import validate, validate_steps
from delia.infra.errors import DeliaError
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
    protocol.apply(cfg, protocol.run_length(cfg, int(cfg.dataset.get("train_size") or 64)))
    validate_steps(cfg)  # the step count the protocol derived (or fixed) fits every step-based option
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


# ------------------------------------------------------------------------------------ typed, closed configs
# groups whose options are written to their own node (the others are @package _global_)
NODE_GROUPS = [g for g in GROUPS if g not in ("method", "experiment", "debug", "hparams_search", "hydra")]
NODE_OPTIONS = [(g, o) for g, o in OPTIONS if g in NODE_GROUPS]
SKIPPED = ("_target_", "_partial_")


def _leaves(node: object, prefix: str) -> list[tuple[str, object]]:
    """Every scalar (or list) option under ``node``, as dotted keys."""
    if not isinstance(node, dict):
        return [(prefix, node)]
    found = []
    for key, value in node.items():
        if key not in SKIPPED:
            found += _leaves(value, f"{prefix}.{key}")
    return found


WRONG = {"not": "a value"}  # a group where every option above holds a number, a flag, a text or a list


# options a library takes without a type we can check: through **kwargs (wandb.init's), or under a hint
# that names a type not importable here; the library checks them when the run builds the object
UNCHECKED = {
    "logger.wandb.tags",
    "trainer.strategy.sharding_strategy",
    "trainer.strategy.use_orig_params",
    "trainer.strategy.find_unused_parameters",
}


def _unchecked(values: dict, key: str) -> bool:
    from typing import Any

    from delia.infra.schema import _parameters

    parent: object = values
    for part in key.split(".")[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or "_target_" not in parent:
        return False
    params, open_ended = _parameters(parent["_target_"])
    name = key.rpartition(".")[2]
    return (open_ended and name not in params) or params.get(name) is Any


def test_the_options_no_schema_checks_are_known(tmp_path: Path) -> None:
    found = set()
    for group, option in NODE_OPTIONS:
        values = OmegaConf.to_container(_composed(group, option, tmp_path), resolve=True)
        found |= {key for key, _ in _leaves(values[group], group) if _unchecked(values, key)}
    assert found == UNCHECKED


def _composed(group: str, option: str, tmp_path: Path):
    extra = NEEDS_INPUT.get((group, option), (None, []))[1]
    return compose_train([f"{group}={option}", *extra], run_dir=tmp_path)


@pytest.mark.parametrize(("group", "option"), NODE_OPTIONS, ids=[f"{g}={o}" for g, o in NODE_OPTIONS])
def test_every_option_refuses_a_wrong_type_in_one_line(group: str, option: str, tmp_path: Path) -> None:
    cfg = _composed(group, option, tmp_path)
    values = OmegaConf.to_container(cfg, resolve=True)
    checked = 0
    for key, _value in _leaves(values[group], group):
        if _unchecked(values, key):
            continue
        bad = cfg.copy()
        OmegaConf.update(bad, key, WRONG, merge=False)
        with pytest.raises(DeliaError) as refused:
            validate(bad)
        message = str(refused.value)
        assert key in message and "\n" not in message, message
        checked += 1
    assert checked or not values[group]


@pytest.mark.parametrize("group", NODE_GROUPS)
def test_an_unknown_key_is_refused_with_its_name(group: str, tmp_path: Path) -> None:
    cfg = compose_train([f"+{group}.trian_size=10"], run_dir=tmp_path)
    with pytest.raises(DeliaError, match=rf"{group}\.trian_size"):
        validate(cfg)


def test_a_typo_names_the_option_it_meant(tmp_path: Path) -> None:
    cfg = compose_train(["+dataset.trian_size=10"], run_dir=tmp_path)
    with pytest.raises(
        DeliaError, match=r"dataset\.trian_size is not an option .* did you mean train_size\?"
    ):
        validate(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=abc", r"optimizer\.lr='abc': input should be a valid number"),
        ("peft.r=0", r"peft\.r=0: input should be greater than 0"),
        ("peft.lora_alpha=abc", r"peft\.lora_alpha='abc'"),
        ("+seed_typo=1", r"seed_typo is not an option of the config"),
        ("trainer.max_steps=abc", r"trainer\.max_steps='abc'"),
    ],
)
def test_the_issue_examples_are_one_line_errors(override: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(DeliaError, match=message):
        validate(compose_train([override], run_dir=tmp_path))


def test_an_unknown_key_without_plus_is_named_before_hydra_runs() -> None:
    from delia.cli import unknown_key

    problem = unknown_key(["dataset.trian_size=10", "model=tiny_random"])
    assert problem is not None and problem.startswith("dataset.trian_size is not an option of dataset")
    assert "did you mean dataset.train_size?" in problem
    assert unknown_key(["dataset.train_size=10", "optimizer.lr=1e-4"]) is None
    # options that exist only under the chosen group option are found there
    assert unknown_key(["schedule=two_stage", "schedule.stage1_fraction=0.3"]) is None
    assert unknown_key(["schedule.stage1_fraction=0.3"]) is not None


def test_a_key_whose_value_is_still_missing_is_known() -> None:
    from delia.cli import unknown_key

    assert unknown_key(["dataset=jsonl", "dataset.path=train.jsonl"]) is None
