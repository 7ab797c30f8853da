"""The eval budget comes from the data unless set, a reply is cut only when it ran past it, and a run
whose budget cut more than 5% of a split's replies says so in its summary."""

from __future__ import annotations

import math

from delia.baselines import prompted_task
from delia.console.summary import cut_warnings
from delia.eval.evaluate import eval_budget, generate_with_cuts
from tests.conftest import TINY, compose_train


def test_the_budget_is_set_or_twice_the_longest_reference_reply(tiny_model) -> None:
    _, tok = tiny_model
    cfg = compose_train([*TINY, "eval.max_new_tokens=null"])
    splits = prompted_task(cfg)
    longest = max(
        len(tok.encode(r["messages"][-1]["content"], add_special_tokens=False)) + 1
        for name in ("seen_wordings", "unseen_wordings")
        for r in splits[name]
    )
    assert eval_budget(cfg, splits, tok) == math.ceil(2.0 * longest)
    cfg.eval.budget_factor = 1.5
    assert eval_budget(cfg, splits, tok) == math.ceil(1.5 * longest)
    cfg.eval.max_new_tokens = 7
    assert eval_budget(cfg, splits, tok) == 7


def test_a_reply_is_cut_when_it_fills_the_budget_without_an_end_of_turn(tiny_model) -> None:
    model, tok = tiny_model
    prompts = ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"] * 2
    _, cut = generate_with_cuts(model, tok, prompts, 3, 2)
    ids = tok.encode(prompts[0], add_special_tokens=False)
    import torch

    out = model.generate(
        torch.tensor([ids]), do_sample=False, max_new_tokens=3, pad_token_id=tok.pad_token_id
    )
    ended = any(
        t in {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")} for t in out[0, len(ids) :].tolist()
    )
    assert cut == [not ended, not ended]


def test_the_summary_says_when_the_budget_cut_more_than_five_percent() -> None:
    metrics = {"eval/max_new_tokens": 88.0, "seen_wordings/cut": 0.25, "unseen_wordings/cut": 0.05}
    [line] = cut_warnings(metrics)
    assert "88 new tokens" in line and "25% of the seen_wordings replies" in line
    assert "eval.max_new_tokens" in line
    assert cut_warnings({"seen_wordings/cut": 0.0}) == []
