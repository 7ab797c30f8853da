"""The DELIA mix: ratio, determinism, DDP sharding, and the schedules' plans and loss weights."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from omegaconf import OmegaConf

from delia.data.datamodule import DeliaDataModule
from delia.data.mixing import DIVERSE, TASK, diverse_count, rank_shard
from delia.schedule import Interleave, SourceLosses, TwoStage, Weighted, build_schedule


def records(n: int, tag: str) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"{tag} {i}"},
                {"role": "assistant", "content": f"reply {i}"},
            ]
        }
        for i in range(n)
    ]


def datamodule(
    tok, n_task: int, ratio: float, steps: int, batch: int, seed: int = 0, schedule=None
) -> DeliaDataModule:
    dm = DeliaDataModule(
        tok,
        records(n_task, "task"),
        records(diverse_count(n_task, ratio), "div"),
        records(2, "eval"),
        schedule or Interleave(),
        max_steps=steps,
        batch_size=batch,
        max_length=64,
        seed=seed,
    )
    dm.setup("fit")
    return dm


def test_ratio_of_one_pass_is_the_diverse_ratio(tiny_model) -> None:
    _, tok = tiny_model
    n_task, ratio = 6, 3.0
    dm = datamodule(tok, n_task, ratio, steps=6, batch=4)  # 24 entries = exactly one pass over 6 + 18
    counts = Counter(source for source, _ in dm.global_plan)
    assert counts[DIVERSE] == ratio * counts[TASK] == 18
    assert sorted(i for s, i in dm.global_plan if s == TASK) == list(range(n_task))


def test_plan_is_deterministic_for_a_seed(tiny_model) -> None:
    _, tok = tiny_model
    assert (
        datamodule(tok, 5, 2, 10, 3, seed=1).global_plan == datamodule(tok, 5, 2, 10, 3, seed=1).global_plan
    )
    assert (
        datamodule(tok, 5, 2, 10, 3, seed=1).global_plan != datamodule(tok, 5, 2, 10, 3, seed=2).global_plan
    )


def test_batches_carry_their_source(tiny_model) -> None:
    _, tok = tiny_model
    dm = datamodule(tok, 4, 1, 2, 4)
    batch = next(iter(dm.train_dataloader()))
    plan_sources = [s for s, _ in dm.global_plan[:4]]
    assert batch["source"].tolist() == plan_sources
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape


@pytest.mark.parametrize("world_size", [2, 4])
def test_ddp_shards_are_disjoint_and_keep_the_global_ratio(world_size: int) -> None:
    n_task, ratio = 10, 4
    plan = Interleave().plan(n_task, n_task * ratio, total=50 * world_size, steps=10, rng=random.Random(0))
    shards = [rank_shard(plan, rank, world_size) for rank in range(world_size)]
    assert sum(len(s) for s in shards) == len(plan)
    merged = [shards[i % world_size][i // world_size] for i in range(len(plan))]
    assert merged == plan  # every entry once, on exactly one rank
    counts = Counter(s for s, _ in plan)
    assert counts[DIVERSE] == ratio * counts[TASK]


def test_two_stage_plan_is_task_only_then_diverse_with_fraction_k() -> None:
    schedule = TwoStage(stage1_fraction=0.5, task_fraction_k=0.25)
    plan = schedule.plan(n_task=8, n_diverse=40, total=80, steps=10, rng=random.Random(0))
    stage1, stage2 = plan[:40], plan[40:]
    assert {s for s, _ in stage1} == {TASK}
    assert {i for s, i in stage2 if s == TASK} and len({i for s, i in stage2 if s == TASK}) == 2  # k * 8
    assert Counter(s for s, _ in stage2)[DIVERSE] == 38


def test_weighted_lambda_shapes() -> None:
    linear = Weighted(lambda_shape="linear", lambda_start=1.0, lambda_end=0.0)
    cosine = Weighted(lambda_shape="cosine", lambda_start=1.0, lambda_end=0.0)
    assert (
        linear.weight(0, 11) == 1.0
        and linear.weight(10, 11) == 0.0
        and linear.weight(5, 11) == pytest.approx(0.5)
    )
    assert cosine.weight(0, 11) == pytest.approx(1.0) and cosine.weight(10, 11) == pytest.approx(0.0)
    assert Weighted(lambda_start=0.3).weight(7, 11) == 0.3


def test_schedules_combine_losses_as_documented() -> None:
    losses = SourceLosses(torch.tensor(6.0), torch.tensor(3), torch.tensor(2.0), torch.tensor(1))
    assert Interleave().combine(losses, 0, 10).item() == pytest.approx(8.0 / 4)
    assert Weighted(lambda_start=0.5).combine(losses, 0, 10).item() == pytest.approx(2.0 + 0.5 * 2.0)
    assert build_schedule(OmegaConf.create({"name": "two_stage"})).combine(
        losses, 0, 10
    ).item() == pytest.approx(2.0)
