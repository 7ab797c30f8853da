"""The DELIA loss schedule (conf/schedule/): how the downstream-task loss and the diverse-data loss combine.

Each schedule does two things:
- it lays out which examples the run sees, step by step (see delia/data/mixing.py), under one of two
  protocols: *exposure* (the paper's: ``task_epochs`` passes over the downstream set, each with its
  diverse examples, the step count following from the data: :meth:`exposure_length`,
  :meth:`exposure_plan`) or *compute* (a fixed number of steps: :meth:`plan`);
- ``combine``: turns the per-source token losses of a batch into the training loss at step ``t``.

``interleave`` (the paper, default): one stage over the shuffled mix; loss = mean over all assistant tokens.
``weighted``: the same mix; loss = L_task + lambda(t) * L_diverse, lambda constant / linear / cosine.
``two_stage`` (DMT, Dong et al. 2024): stage 1 task only; stage 2 the diverse data plus a fraction k
of the task data; loss = mean over all assistant tokens.

The dataclasses are also the group's schema: :func:`build_schedule` checks types, ranges and names.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import torch
from omegaconf import DictConfig
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config

from delia.data.mixing import TASK, PlanItem, pool, shuffled_passes
from delia.infra import plain
from delia.infra.errors import DeliaError
from delia.infra.schema import problem

Fraction = Annotated[float, Field(ge=0, le=1)]


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


class Schedule(Protocol):
    """What the data module and the training step ask of a schedule."""

    name: str

    def exposure_length(self, n_task: int, n_diverse: int, task_epochs: int) -> int:
        """How many examples the exposure protocol trains on (before padding to whole steps)."""
        ...

    def exposure_plan(
        self, n_task: int, n_diverse: int, task_epochs: int, total: int, rng: random.Random
    ) -> list[PlanItem]:
        """The exposure protocol's step plan, padded to ``total`` entries by the next shuffled pass."""
        ...

    def plan(self, n_task: int, n_diverse: int, total: int, steps: int, rng: random.Random) -> list[PlanItem]:
        """The compute protocol's step plan: ``total`` entries for ``steps`` optimizer steps."""
        ...

    def weight(self, step: int, max_steps: int) -> float:
        """The weight of the diverse loss at ``step`` (1 where the sources are simply pooled)."""
        ...

    def combine(self, losses: SourceLosses, step: int, max_steps: int) -> torch.Tensor:
        """The training loss of a batch at ``step``."""
        ...


@with_config(ConfigDict(extra="forbid"))
@dataclass
class Interleave:
    """The paper's one-stage schedule: downstream and diverse examples shuffled together."""

    name: Literal["interleave"] = "interleave"

    def exposure_length(self, n_task: int, n_diverse: int, task_epochs: int) -> int:
        return task_epochs * (n_task + n_diverse)

    def exposure_plan(
        self, n_task: int, n_diverse: int, task_epochs: int, total: int, rng: random.Random
    ) -> list[PlanItem]:
        # every pass is the whole downstream set with its diverse examples, shuffled together
        return shuffled_passes(pool(n_task, n_diverse), total, rng)

    def plan(self, n_task: int, n_diverse: int, total: int, steps: int, rng: random.Random) -> list[PlanItem]:
        return shuffled_passes(pool(n_task, n_diverse), total, rng)

    def weight(self, step: int, max_steps: int) -> float:
        return 1.0

    def combine(self, losses: SourceLosses, step: int, max_steps: int) -> torch.Tensor:
        return losses.all_tokens


@with_config(ConfigDict(extra="forbid"))
@dataclass
class Weighted(Interleave):
    """loss = L_task + lambda(t) * L_diverse, lambda from ``lambda_start`` to ``lambda_end``."""

    name: Literal["weighted"] = "weighted"  # type: ignore[assignment]
    lambda_shape: Literal["constant", "linear", "cosine"] = "constant"
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


@with_config(ConfigDict(extra="forbid"))
@dataclass
class TwoStage(Interleave):
    """DMT: stage 1 on the task data; stage 2 on the diverse data plus a fraction k of the task data."""

    name: Literal["two_stage"] = "two_stage"  # type: ignore[assignment]
    stage1_fraction: Fraction = 0.5
    task_fraction_k: Fraction = 0.0625

    def kept(self, n_task: int) -> int:
        """How many downstream examples stage 2 keeps: a fraction k of them, rounded up."""
        return min(math.ceil(n_task * self.task_fraction_k), n_task)

    def _stage2_pool(self, n_task: int, n_diverse: int, rng: random.Random) -> list[PlanItem]:
        stage2_pool = [(TASK, i) for i in rng.sample(range(n_task), self.kept(n_task))] + pool(0, n_diverse)
        if not stage2_pool:
            raise DeliaError("schedule=two_stage needs diverse data or task_fraction_k > 0 for stage 2")
        return stage2_pool

    def exposure_length(self, n_task: int, n_diverse: int, task_epochs: int) -> int:
        return task_epochs * n_task + n_diverse + self.kept(n_task)

    def exposure_plan(
        self, n_task: int, n_diverse: int, task_epochs: int, total: int, rng: random.Random
    ) -> list[PlanItem]:
        """Stage 1: ``task_epochs`` passes over the task; stage 2: one pass over the diverse data plus
        a fraction k of the task (padded by its next shuffled pass)."""
        stage1 = task_epochs * n_task
        stage2_pool = self._stage2_pool(n_task, n_diverse, rng)
        return shuffled_passes(pool(n_task, 0), stage1, rng) + shuffled_passes(
            stage2_pool, total - stage1, rng
        )

    def plan(self, n_task: int, n_diverse: int, total: int, steps: int, rng: random.Random) -> list[PlanItem]:
        """Stage 1 is ``stage1_fraction`` of the steps, stage 2 the rest."""
        per_step = total // max(steps, 1)
        stage1 = round(steps * self.stage1_fraction) * per_step
        stage2_pool = self._stage2_pool(n_task, n_diverse, rng) if stage1 < total else []
        return shuffled_passes(pool(n_task, 0), stage1, rng) + shuffled_passes(
            stage2_pool, total - stage1, rng
        )


# schedule.name -> the schedule
SCHEDULES: dict[str, type[Interleave]] = {
    "interleave": Interleave,
    "weighted": Weighted,
    "two_stage": TwoStage,
}


def build_schedule(cfg: DictConfig) -> Schedule:
    """The schedule named by ``schedule.name`` (conf/schedule/), its options checked."""
    if cfg.get("name") not in SCHEDULES:
        raise DeliaError(f"schedule.name={cfg.get('name')!r} is unknown: use one of {', '.join(SCHEDULES)}")
    kind = SCHEDULES[cfg.name]
    try:
        return TypeAdapter(kind).validate_python(plain(cfg))
    except ValidationError as err:
        raise DeliaError(problem(err, "schedule", list(kind.__dataclass_fields__))) from None
