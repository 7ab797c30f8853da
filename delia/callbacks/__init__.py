"""The callbacks (conf/callbacks/): checkpoints, checkpoint-and-stop on preemption, the representation
tracker, the learning-rate monitor."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from delia.callbacks.preemption import PreemptionCheckpoint
from delia.callbacks.representation import RepresentationTracker
from delia.console.progress import StepProgressBar
from delia.dataset import prior_description


def wanted(conf: Mapping[str, Any], cfg: Mapping[str, Any]) -> bool:
    """A callback entry with a target; the representation tracker only when the task adds a token."""
    target = str(conf.get("_target_", ""))
    return bool(target) and not (
        target.endswith("RepresentationTracker") and not cfg["dataset"].get("special_token")
    )


def build_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list[Any]:
    """The configured callbacks; checkpoints go to ``ckpt_dir`` (a disperse_merge portion has its own)."""
    callbacks = [instantiate(conf) for conf in cfg.callbacks.values() if wanted(conf, cfg)]
    if cfg.trainer.get("enable_progress_bar", True):  # step x of max_steps for the whole run
        portion = ckpt_dir.parent.name if ckpt_dir.parent.parent.name == "portions" else None
        callbacks.append(StepProgressBar("training" if portion is None else f"training portion {portion}"))
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint | PreemptionCheckpoint):
            callback.dirpath = type(callback.dirpath)(ckpt_dir) if callback.dirpath is not None else None
        if isinstance(callback, RepresentationTracker):
            callback.description = prior_description(cfg.dataset)
    return callbacks


def preempted_at(callbacks: list[Any]) -> int | None:
    """The step at which a preemption signal stopped training (None: it ran to the end)."""
    steps = [c.saved_at_step for c in callbacks if isinstance(c, PreemptionCheckpoint) and c.saved_at_step]
    return steps[0] if steps else None
