"""The callbacks (conf/callbacks/): checkpoints, checkpoint-and-stop on preemption, the representation
tracker, the learning-rate monitor; and, whatever the group says, the protocol check.

Guarantees: a configured callback that cannot work in this run is not built (the representation
tracker without a new token, the learning-rate monitor without a logger to write to); every fit the
protocol planned starts with :class:`~delia.callbacks.protocol_check.ProtocolCheck`, which refuses in
one line a trainer or a data set that is not the one the step count was computed for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from delia.callbacks.preemption import PreemptionCheckpoint
from delia.callbacks.protocol_check import ProtocolCheck
from delia.callbacks.representation import RepresentationTracker
from delia.console.progress import StepProgressBar
from delia.dataset import prior_description


def has_logger(cfg: Mapping[str, Any]) -> bool:
    """Whether the config builds at least one logger (an entry of ``logger`` with a target)."""
    return any(
        isinstance(conf, Mapping) and "_target_" in conf for conf in (cfg.get("logger") or {}).values()
    )


def wanted(conf: Mapping[str, Any], cfg: Mapping[str, Any]) -> bool:
    """A callback entry with a target; the representation tracker only when the task adds a token, the
    learning-rate monitor only when there is a logger (Lightning refuses it without one)."""
    target = str(conf.get("_target_", ""))
    if target.endswith("RepresentationTracker"):
        return bool(cfg["dataset"].get("special_token"))
    if target.endswith("LearningRateMonitor"):
        return has_logger(cfg)
    return bool(target)


def build_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list[Any]:
    """The configured callbacks; checkpoints go to ``ckpt_dir`` (a disperse_merge portion has its own).

    The protocol check comes first when the protocol has planned this run (``protocol.assumed``, written by
    :func:`delia.protocol.apply`)."""
    callbacks = [instantiate(conf) for conf in cfg.callbacks.values() if wanted(conf, cfg)]
    assumed = cfg.protocol.get("assumed")
    if assumed is not None:
        read = {key: cfg.trainer.get(key) for key in ("accelerator", "devices", "num_nodes")}
        callbacks.insert(0, ProtocolCheck(assumed, read))
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
