"""DELIA's mixing of downstream (task) and diverse examples.

The number of diverse examples is ``diverse ratio x number of downstream examples`` (the release:
ratio 260). Both sets are concatenated and shuffled; the run is laid out in advance as a *step plan*:
the global sequence of ``(source, index)`` pairs that the whole run consumes, ``max_steps x
accumulation x batch size x world size`` long. Each rank takes every ``world_size``-th entry, so every
rank sees its own shard and the ratio holds globally. The plan depends only on the seed.

Under the paper's protocol (*exposure*, the default) the step count follows from the data
(:func:`steps_for`): ``task_epochs`` passes over the downstream set with their diverse examples, the
last step filled up from the next shuffled pass; under the *compute* protocol it is fixed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

TASK, DIVERSE = 0, 1
PlanItem = tuple[int, int]  # (source, index into that source's examples)


def diverse_ratio(diverse_cfg: Any) -> float:
    """The diverse ratio in effect: ``diverse=none`` means none, whatever ``ratio`` an experiment set."""
    return 0.0 if diverse_cfg.name == "none" else float(diverse_cfg.ratio)


def diverse_count(n_task: int, ratio: float) -> int:
    """How many diverse examples DELIA mixes with ``n_task`` downstream examples."""
    return round(n_task * ratio)


def steps_for(n_examples: int, batch_size: int, accumulate: int = 1, world_size: int = 1) -> int:
    """The optimizer steps that train on ``n_examples`` examples once: rounded up, at least one."""
    return max(1, math.ceil(n_examples / (batch_size * accumulate * world_size)))


def pool(n_task: int, n_diverse: int) -> list[PlanItem]:
    """One pass over the mixture: every task example and every diverse example once."""
    return [(TASK, i) for i in range(n_task)] + [(DIVERSE, i) for i in range(n_diverse)]


def shuffled_passes(items: Sequence[PlanItem], total: int, rng: random.Random) -> list[PlanItem]:
    """Concatenate freshly shuffled passes over ``items`` until ``total`` entries (the last one cut)."""
    if total <= 0:
        return []
    if not items:
        raise ValueError("cannot build a plan from an empty pool")
    plan: list[PlanItem] = []
    while len(plan) < total:
        one_pass = list(items)
        rng.shuffle(one_pass)
        plan += one_pass
    return plan[:total]


def rank_shard(plan: Sequence[PlanItem], rank: int, world_size: int) -> list[PlanItem]:
    """The entries of the global plan that ``rank`` trains on."""
    return list(plan[rank::world_size])
