"""The training step (delia/module.py): under every schedule the combined loss is what the schedule says,
finite, and reaches the LoRA weights; a baseline without diverse data plans no diverse example."""

from __future__ import annotations

import pytest
import torch

from delia.data.datamodule import build_datamodule
from delia.data.mixing import DIVERSE, TASK, diverse_count, diverse_ratio
from delia.dataset import prior_description
from delia.model import add_new_tokens, wrap_peft
from delia.module import source_losses
from delia.schedule import build_schedule
from tests.conftest import TINY, compose_train


def diverse_records(n: int) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": f"q{i}?"}, {"role": "assistant", "content": "an answer"}]}
        for i in range(n)
    ]


def setup_step(tiny_model, *overrides: str):
    """The peft model, the schedule and the first batches of the run ``overrides`` configures."""
    from delia.baselines import prompted_task

    model, tok = tiny_model
    cfg = compose_train([*TINY, *overrides])
    splits = prompted_task(cfg)
    token = cfg.dataset.special_token
    init = (cfg.token_init.strategy, prior_description(cfg.dataset), cfg.seed)
    ids = list(add_new_tokens(model, tok, token, *init).values())
    peft_model = wrap_peft(model, cfg.peft, ids, cfg.baseline.train_new_tokens)
    n_diverse = diverse_count(len(splits["train"]), diverse_ratio(cfg.diverse))
    schedule = build_schedule(cfg.schedule)
    dm = build_datamodule(cfg, tok, splits["train"], diverse_records(n_diverse), [], schedule, 4, None)
    dm.setup("fit")
    return peft_model, schedule, dm


def with_diverse(dm) -> dict[str, torch.Tensor]:
    """The first batch that holds diverse examples (two_stage's come in stage 2)."""
    return next(batch for batch in dm.train_dataloader() if (batch["source"] == DIVERSE).any())


@pytest.mark.parametrize("name", ["interleave", "weighted", "two_stage"])
def test_each_schedule_combines_the_source_losses_as_it_says(tiny_model, name: str) -> None:
    peft_model, schedule, dm = setup_step(tiny_model, f"schedule={name}", "peft.lora_dropout=0")
    sources = [source for source, _ in dm.global_plan]
    assert TASK in sources and DIVERSE in sources  # the plan mixes both
    batch = with_diverse(dm)
    losses = source_losses(peft_model, batch)
    for step in (0, 3):
        loss = schedule.combine(losses, step, 4)
        weight = schedule.weight(step, 4)
        if name == "weighted":
            expected = losses.task + weight * losses.diverse
        else:
            expected = losses.all_tokens
        torch.testing.assert_close(loss, expected)
        assert torch.isfinite(loss) and loss > 0
    schedule.combine(losses, 0, 4).backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_two_stage_trains_the_task_alone_first(tiny_model) -> None:
    _, _, dm = setup_step(tiny_model, "schedule=two_stage", "schedule.stage1_fraction=0.5")
    per_step = len(dm.global_plan) // 4
    first_stage = [source for source, _ in dm.global_plan[: 2 * per_step]]
    assert set(first_stage) == {TASK} and DIVERSE in {s for s, _ in dm.global_plan[2 * per_step :]}


def test_common_it_plans_no_diverse_example(tiny_model) -> None:
    _, _, dm = setup_step(tiny_model, "baseline=common_it")
    assert {source for source, _ in dm.global_plan} == {TASK}
