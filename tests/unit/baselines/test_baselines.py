"""Every baseline and ablation is a config choice with a real implementation; nonsense is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from delia import baselines
from delia.config import validate
from delia.infra.errors import DeliaError
from tests.conftest import REPO, TINY, compose_train

SEP_METHODS = [
    *(name for name in baselines.BASELINES if name != "dipmt"),  # dipmt needs a translation task
    "delia_no_task_diversification",
    "delia_no_diverse_data",
]


def test_the_method_group_has_every_baseline_and_ablation() -> None:
    options = {p.stem for p in (REPO / "conf" / "method").glob("*.yaml")}
    assert options == {*SEP_METHODS, "dipmt"}


@pytest.mark.parametrize("method", SEP_METHODS)
def test_every_method_composes_and_validates(method: str) -> None:
    cfg = compose_train([*TINY, f"method={method}"])
    validate(cfg)
    expected = "delia" if method.startswith("delia") else method
    assert cfg.baseline.name == expected


def test_each_baseline_sets_what_defines_it() -> None:
    def cfg(name: str):
        return compose_train([*TINY, f"baseline={name}"])

    assert cfg("common_it").diverse.name == "none" and not cfg("common_it").dataset.diversify_instructions
    assert (
        cfg("random_token").token_init.strategy == "random"
        and not cfg("random_token").baseline.train_new_tokens
    )
    assert cfg("mean_embedding").token_init.strategy == "mean"
    assert cfg("fact_based").token_init.strategy == "description"
    assert not cfg("ctg").baseline.train and cfg("ctg").baseline.prior_description_in_prompt
    assert cfg("dmt").schedule.name == "two_stage" and cfg("dmt").diverse.name == "self_sample"
    assert (
        cfg("disperse_merge").baseline.portions == 2 and cfg("disperse_merge").baseline.combination == "cat"
    )
    delia = cfg("delia")
    assert delia.diverse.name == "self_sample" and delia.dataset.diversify_instructions
    no_div = compose_train([*TINY, "ablation=no_task_diversification"])
    assert no_div.diverse.name == "self_sample" and not no_div.dataset.diversify_instructions
    no_data = compose_train([*TINY, "ablation=no_diverse_data"])
    assert no_data.diverse.name == "none" and no_data.dataset.diversify_instructions


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["baseline=common_it", "ablation=no_diverse_data"], "ablation of DELIA"),
        (["baseline=dipmt"], "not a translation task"),
        (["baseline=ctg", "dataset=wmt21_is_en", "dataset.path=x.jsonl"], "has none"),
        (["baseline=dmt", "schedule=interleave"], "needs schedule=two_stage"),
        (["baseline=disperse_merge", "baseline.portions=1"], "baseline.portions=1"),
        (["baseline=disperse_merge", "baseline.combination=average"], "baseline.combination"),
        (["baseline=disperse_merge", "baseline.combination=ties", "baseline.density=0"], "baseline.density"),
        (["baseline=mean_embedding", "dataset=jsonl", "dataset.path=x.jsonl"], "adds none"),
        (["baseline.name=magic"], "baseline.name='magic': input should be 'delia'"),
    ],
)
def test_combinations_that_make_no_sense_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(DeliaError, match=message) as err:
        validate(compose_train([*TINY, *overrides]))
    assert "\n" not in str(err.value)


def test_paper_experiments_compose_with_the_published_settings() -> None:
    llama = compose_train(["experiment=paper_sep_llama2"])
    validate(llama)
    assert llama.model.path == "meta-llama/Llama-2-7b-chat-hf" and llama.diverse.ratio == 260
    assert llama.optimizer.lr == 2e-4 and llama.peft.r == 16 and llama.peft.lora_alpha == 16
    assert llama.trainer.accumulate_grad_batches == 4 and llama.data.batch_size == 16
    gemma = compose_train(["experiment=paper_translation_gemma", "baseline=dipmt"])
    validate(gemma)
    assert gemma.model.path == "google/gemma-7b-it" and gemma.dataset.kind == "translation"
    # a no-diverse-data baseline under a ratio-260 experiment has no diverse data
    from delia.data.mixing import diverse_ratio

    assert diverse_ratio(compose_train(["experiment=paper_sep_llama2", "baseline=common_it"]).diverse) == 0


def test_sep_cpu_grid_sweeps_every_method_over_three_seeds() -> None:
    text = (REPO / "conf" / "experiment" / "sep_cpu.yaml").read_text()
    grid = OmegaConf.create(text).hydra.sweeper.params
    assert sorted(str(grid.method).split(",")) == sorted(SEP_METHODS)
    assert str(grid.seed) == "1,2,3"
    for method in SEP_METHODS:  # every job of the grid passes validation
        validate(compose_train(["experiment=sep_cpu", f"method={method}", "seed=1"]))


# ---------------------------------------------------------------------------------------------
# the code of ctg and disperse_merge
# ---------------------------------------------------------------------------------------------


def test_prior_description_goes_before_the_first_user_turn_without_touching_the_input() -> None:
    records = [{"messages": [{"role": "user", "content": "judge it"}, {"role": "assistant", "content": "x"}]}]
    out = baselines.with_prior_description(records, "DESCRIPTION")
    assert out[0]["messages"][0]["content"] == "DESCRIPTION\n\njudge it"
    assert out[0]["messages"][1]["content"] == "x"
    assert records[0]["messages"][0]["content"] == "judge it"


def test_portions_are_disjoint_cover_everything_and_are_balanced() -> None:
    records = [{"id": i} for i in range(11)]
    parts = baselines.portions(records, 3, seed=5)
    ids = [r["id"] for part in parts for r in part]
    assert sorted(ids) == list(range(11)) and len(set(ids)) == 11
    assert sorted(len(p) for p in parts) == [3, 4, 4]
    assert baselines.portions(records, 3, seed=5) == parts
    assert sum(baselines.portion_steps(25, 3)) == 25 and baselines.portion_steps(25, 3) == [9, 8, 8]
    with pytest.raises(DeliaError, match="exceeds the 11 training examples"):
        baselines.portions(records, 12, seed=5)


def _two_adapters(tiny_model, combination: str):
    import copy

    from delia.model import add_special_token, resize_for_tokenizer, wrap_peft

    model, tok = tiny_model
    token_id = add_special_token(tok, "<sep>")
    resize_for_tokenizer(model, tok)
    peft_model = wrap_peft(model, compose_train(TINY).peft, [token_id])
    peft_model.add_adapter("portion1", copy.deepcopy(peft_model.peft_config["default"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "trainable_tokens_delta" in name:
                param.fill_(1.0 if name.endswith("default") else 3.0)
            elif "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen))
    cfg = OmegaConf.create({"combination": combination, "density": 0.5})
    return peft_model, token_id, cfg


def test_merge_averages_the_new_token_rows_and_cat_averages_the_lora_deltas(tiny_model) -> None:
    peft_model, token_id, cfg = _two_adapters(tiny_model, "cat")
    q_proj = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    expected = 0.5 * (q_proj.get_delta_weight("default") + q_proj.get_delta_weight("portion1"))
    baselines.merge_adapters(peft_model, ["default", "portion1"], cfg)
    assert peft_model.active_adapter == "default" and list(peft_model.peft_config) == ["default"]
    torch.testing.assert_close(q_proj.get_delta_weight("default"), expected, rtol=1e-5, atol=1e-6)
    row = peft_model.get_input_embeddings()(torch.tensor([[token_id]]))[0, 0]
    torch.testing.assert_close(row, torch.full_like(row, 2.0))


@pytest.mark.parametrize("combination", ["linear", "ties", "dare_linear"])
def test_linear_ties_and_dare_merges_give_a_new_active_adapter(tiny_model, combination: str) -> None:
    peft_model, _, cfg = _two_adapters(tiny_model, combination)
    q_proj = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    before = q_proj.get_delta_weight("default").clone()
    baselines.merge_adapters(peft_model, ["default", "portion1"], cfg)
    merged = q_proj.get_delta_weight("default")
    assert peft_model.active_adapter == "default" and list(peft_model.peft_config) == ["default"]
    assert merged.abs().sum() > 0 and not torch.allclose(merged, before)


def test_a_saved_portion_loads_back_exactly(tiny_model, tmp_path: Path) -> None:
    peft_model, _, _ = _two_adapters(tiny_model, "linear")
    before = {k: v.clone() for k, v in peft_model.state_dict().items() if "portion1" in k}
    baselines.save_portion(peft_model, "portion1", tmp_path)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "portion1" in name:
                param.zero_()
    assert baselines.load_portion(peft_model, "portion1", tmp_path)
    after = {k: v for k, v in peft_model.state_dict().items() if "portion1" in k}
    for key, value in before.items():
        torch.testing.assert_close(after[key], value)
    assert not baselines.load_portion(peft_model, "portion1", tmp_path / "none")


def test_ctg_prompts_every_split_with_the_prior_description_and_trains_nothing(tmp_path: Path) -> None:
    from delia.dataset import prior_description
    from delia.recipe import train_by_baseline

    cfg = compose_train([*TINY, "baseline=ctg"])
    description = prior_description(cfg.dataset)
    for name, rows in baselines.prompted_task(cfg).items():
        firsts = [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in rows]
        assert firsts and all(text.startswith(description) for text in firsts), name
    plain = baselines.prompted_task(compose_train(TINY))["seen_wordings"]
    assert not any(m["content"].startswith(description) for r in plain for m in r["messages"])
    # no trainer is built: nothing to run, no checkpoint, the untuned model is evaluated as it is
    assert train_by_baseline(cfg, None, None, [], tmp_path, None, None) == (None, None)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("baseline", ["random_token", "delia"])
def test_random_token_keeps_its_row_frozen_while_delia_trains_it(tiny_model, baseline: str) -> None:
    from delia.dataset import prior_description
    from delia.model import add_new_tokens, wrap_peft

    model, tok = tiny_model
    cfg = compose_train([*TINY, f"baseline={baseline}"])
    description = prior_description(cfg.dataset)
    token = cfg.dataset.special_token
    ids = list(add_new_tokens(model, tok, token, cfg.token_init.strategy, description, cfg.seed).values())
    peft_model = wrap_peft(model, cfg.peft, ids, cfg.baseline.train_new_tokens)
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    row_trained = any("trainable_tokens" in name for name in trainable)
    assert any("lora_" in name for name in trainable)  # LoRA trains in both
    assert row_trained == (baseline == "delia")
    assert bool(peft_model.peft_config["default"].trainable_token_indices) == (baseline == "delia")


def test_the_default_disperse_merge_is_the_exact_average_of_the_portions_updates(tiny_model) -> None:
    default = compose_train(["baseline=disperse_merge"]).baseline
    peft_model, _, cfg = _two_adapters(tiny_model, str(default.combination))
    layers = peft_model.base_model.model.model.layers
    modules = [
        getattr(layer.self_attn, name)
        for layer in layers
        for name in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    expected = [0.5 * (m.get_delta_weight("default") + m.get_delta_weight("portion1")) for m in modules]
    baselines.merge_adapters(peft_model, ["default", "portion1"], cfg)
    for module, want in zip(modules, expected, strict=True):
        torch.testing.assert_close(module.get_delta_weight("default"), want, rtol=1e-5, atol=1e-6)


def test_the_recipe_and_the_config_checks_name_no_baseline() -> None:
    """A baseline that trains differently registers its own training; the recipe calls the registry.

    No string in their code (docstrings aside) is a baseline's name, so nothing branches on one."""
    import ast

    for path in ("delia/recipe.py", "delia/config.py"):
        tree = ast.parse((REPO / path).read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        strings = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
        }
        assert not strings & set(baselines.BASELINES), path
        assert "disperse" not in (REPO / path).read_text(), path
    assert baselines.OWN_TRAINING["disperse_merge"].own_checkpoints
