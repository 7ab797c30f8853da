"""How a baseline that trains differently plugs into the recipe: it registers an :class:`OwnTraining`.

The recipe has one training phase (:func:`delia.recipe.fit`: the downstream examples mixed with the
diverse ones, as the schedule says). A baseline that trains otherwise (``disperse_merge``: one adapter
per portion, then a merge) registers its own training in :data:`delia.baselines.OWN_TRAINING`; the recipe
hands it the one-fit phase as a callable (:class:`Fit`) and calls what the registry gives it, so the
recipe and the config checks name no baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import lightning as L
from omegaconf import DictConfig

from delia.infra.types import Record, Splits
from delia.protocol import RunLength


class Fit(Protocol):
    """The recipe's training phase: train ``splits`` (and ``diverse``) for ``steps`` optimizer steps,
    checkpoints in ``ckpt_dir``, resumed from ``ckpt_path`` (``task_epochs``: the exposure protocol's passes
    over the task; None: the steps are fixed). Returns the trainer and the step a preemption stopped at."""

    def __call__(
        self,
        splits: Splits,
        steps: int,
        ckpt_dir: Path,
        ckpt_path: str | None,
        task_epochs: int | None,
        diverse: list[Record],
    ) -> tuple[L.Trainer, int | None]: ...


class TrainFn(Protocol):
    """A baseline's own training: called with the recipe's :class:`Fit`, returns what :class:`Fit` returns
    (the trainer may be None when nothing trained in this process)."""

    def __call__(
        self,
        cfg: DictConfig,
        peft_model: Any,
        splits: Splits,
        loggers: list[Any],
        run_dir: Path,
        fit: Fit,
        length: RunLength,
    ) -> tuple[L.Trainer | None, int | None]: ...


@dataclass(frozen=True)
class OwnTraining:
    """A baseline's training, and the rules it adds to the config checks.

    ``check``: its options, before anything loads (one :class:`~delia.infra.errors.DeliaError` line);
    ``check_steps``: once the protocol has fixed ``trainer.max_steps`` (compute protocol only);
    ``own_checkpoints``: it keeps and resumes its own checkpoints, so the recipe passes it no ``ckpt_path``.
    """

    train: TrainFn
    check: Callable[[DictConfig], None]
    check_steps: Callable[[DictConfig, int], None]
    own_checkpoints: bool = False
