"""The downstream task (conf/dataset/): the built-in ``<sep>`` task, translation, or any chat dataset.

Each builder turns ``dataset.*`` into splits of chat records (``messages`` plus what the metrics need);
``dataset.kind`` picks the builder. The row -> messages transform lives here; tokenization does not
(:mod:`delia.data.tokenize`). Where the instructions' wordings come from beyond a task's own (conf/wordings/):
:mod:`delia.dataset.wordings`, applied by the recipe once the model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from delia.dataset import chat, sep_format, translation
from delia.infra.errors import DeliaError
from delia.infra.types import Splits

__all__ = ["BUILDERS", "Splits", "build_splits", "loss_split", "prior_description"]
# dataset.kind -> the builder of its splits
BUILDERS: dict[str, Callable[[DictConfig], Splits]] = {
    "sep_format": sep_format.build_splits,
    "translation": translation.build_splits,
    "chat": chat.build_splits,
}


def build_splits(dataset_cfg: DictConfig) -> Splits:
    """The task's splits: ``train`` and ``eval``, and for ``sep_format`` also ``heldout`` and ``negative``."""
    if dataset_cfg.kind not in BUILDERS:
        raise DeliaError(f"dataset.kind={dataset_cfg.kind!r} is unknown: use {', '.join(BUILDERS)}")
    return BUILDERS[dataset_cfg.kind](dataset_cfg)


def prior_description(dataset_cfg: DictConfig) -> str | None:
    """The long description the task's new token stands for (only the ``<sep>`` task has one)."""
    if dataset_cfg.kind != "sep_format":
        return None
    return sep_format.prior_description(dataset_cfg.special_token)


def loss_split(splits: Splits) -> list[dict[str, Any]]:
    """The split the eval loss (and validation during training) is computed on: ``eval`` for chat and
    translation data, ``seen_wordings`` for the ``<sep>`` task."""
    return splits.get("eval") or splits.get("seen_wordings") or []
