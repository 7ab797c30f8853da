"""Infrastructure every part uses: one-line errors, locks and atomic writes, safetensors checkpoints,
secrets and data roots, and how a job is launched."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python containers (for peft, wandb, JSON)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
