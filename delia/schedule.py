"""The DELIA loss schedule: how the downstream-task loss and the diverse-data loss combine over steps.

Each schedule does two things:
- ``plan``: lays out which examples the run sees, step by step (see delia/data/mixing.py);
- ``combine``: turns the per-source token losses of a batch into the training loss at step ``t``.

``interleave`` (the paper, default): one stage over the shuffled mix; loss = mean over all assistant tokens.
``weighted``: the same mix; loss = L_task + lambda(t) * L_diverse, lambda constant / linear / cosine.
``two_stage`` (DMT, Dong et al. 2024): stage 1 task only; stage 2 the diverse data plus a fraction k
of the task data; loss = mean over all assistant tokens.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from delia.data.mixing import TASK, PlanItem, pool, shuffled_passes
from delia.errors import DeliaError


@dataclass
class SourceLosses:
    """Summed token losses and token counts of one batch, per source."""

    task_sum: torch.Tensor
    task_tokens: torch.Tensor
    diverse_sum: torch.Tensor
    diverse_tokens: torch.Tensor

    @property
    def task(self) -> torch.Tensor:
        return self.task_sum / self.task_tokens.clamp(min=1)

    @property
    def diverse(self) -> torch.Tensor:
        return self.diverse_sum / self.diverse_tokens.clamp(min=1)

    @property
    def all_tokens(self) -> torch.Tensor:
        return (self.task_sum + self.diverse_sum) / (self.task_tokens + self.diverse_tokens).clamp(min=1)


@dataclass
class Interleave:
    """The paper's one-stage schedule: downstream and diverse examples shuffled together."""

    name: str = "interleave"

    def plan(self, n_task: int, n_diverse: int, total: int, steps: int, rng: random.Random) -> list[PlanItem]:
        return shuffled_passes(pool(n_task, n_diverse), total, rng)

    def weight(self, step: int, max_steps: int) -> float:
        return 1.0

    def combine(self, losses: SourceLosses, step: int, max_steps: int) -> torch.Tensor:
        return losses.all_tokens


@dataclass
class Weighted(Interleave):
    """loss = L_task + lambda(t) * L_diverse, lambda from ``lambda_start`` to ``lambda_end``."""

    name: str = "weighted"
    lambda_shape: str = "constant"
    lambda_start: float = 1.0
    lambda_end: float = 1.0

    def weight(self, step: int, max_steps: int) -> float:
        progress = min(step / max(max_steps - 1, 1), 1.0)
        if self.lambda_shape == "constant":
            return self.lambda_start
        if self.lambda_shape == "linear":
            return self.lambda_start + (self.lambda_end - self.lambda_start) * progress
        # cosine: from start to end along half a cosine period
        return self.lambda_end + (self.lambda_start - self.lambda_end) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )

    def combine(self, losses: SourceLosses, step: int, max_steps: int) -> torch.Tensor:
        return losses.task + self.weight(step, max_steps) * losses.diverse


@dataclass
class TwoStage(Interleave):
    """DMT: stage 1 on the task data; stage 2 on the diverse data plus a fraction k of the task data."""

    name: str = "two_stage"
    stage1_fraction: float = 0.5
    task_fraction_k: float = 0.0625

    def plan(self, n_task: int, n_diverse: int, total: int, steps: int, rng: random.Random) -> list[PlanItem]:
        per_step = total // max(steps, 1)
        stage1 = round(steps * self.stage1_fraction) * per_step
        n_kept = math.ceil(n_task * self.task_fraction_k)
        kept = rng.sample(range(n_task), min(n_kept, n_task))
        stage2_pool = [(TASK, i) for i in kept] + pool(0, n_diverse)
        if stage1 < total and not stage2_pool:
            raise DeliaError("schedule=two_stage needs diverse data or task_fraction_k > 0 for stage 2")
        return shuffled_passes(pool(n_task, 0), stage1, rng) + shuffled_passes(
            stage2_pool, total - stage1, rng
        )


def build_schedule(cfg: DictConfig) -> Interleave:
    """The schedule named by ``schedule.name`` (conf/schedule/)."""
    kinds = {"interleave": Interleave, "weighted": Weighted, "two_stage": TwoStage}
    if cfg.name not in kinds:
        raise DeliaError(f"schedule={cfg.name} is unknown: use one of {', '.join(kinds)}")
    params = {k: v for k, v in cfg.items() if k != "name"}
    if cfg.name == "weighted" and params.get("lambda_shape", "constant") not in (
        "constant",
        "linear",
        "cosine",
    ):
        raise DeliaError(f"schedule.lambda_shape={params['lambda_shape']!r}: use constant, linear or cosine")
    if cfg.name == "two_stage":
        if not 0 <= params.get("stage1_fraction", 0.5) <= 1:
            raise DeliaError("schedule.stage1_fraction must be within [0, 1]")
        if not 0 <= params.get("task_fraction_k", 0.0) <= 1:
            raise DeliaError("schedule.task_fraction_k must be within [0, 1]")
    return kinds[cfg.name](**params)
