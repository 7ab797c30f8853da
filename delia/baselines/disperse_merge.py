"""Disperse-Then-Merge (Fu et al. 2024, ``baseline=disperse_merge``): K portions, K adapters, one merge.

The instruction data is split into ``baseline.portions`` disjoint portions; one LoRA adapter is trained
per portion (the step budget split across them), and the adapters are merged with peft's
``add_weighted_adapter`` (``baseline.combination``). peft does not merge trainable-token rows, so the
new token's rows of the merged adapter are the weighted average of the portions' rows.
"""

from __future__ import annotations

import copy
import logging
import random
from pathlib import Path
from typing import Any, get_args

import lightning as L
import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file

from delia.baselines.schema import Combination
from delia.baselines.training import Fit, OwnTraining
from delia.data.mixing import steps_for
from delia.infra.errors import DeliaError
from delia.infra.files import atomic_path
from delia.infra.types import Splits
from delia.loggers import keep_logged_rows
from delia.module import SEEN_KEYS
from delia.protocol import RunLength

log = logging.getLogger(__name__)
PORTION_FILE = "portion_adapter.safetensors"
# peft's add_weighted_adapter combinations (baseline.combination)
MERGE_COMBINATIONS = get_args(Combination)
PRUNING = ("ties", "dare_linear", "dare_ties", "magnitude_prune")  # these read baseline.density


def check_disperse(cfg: DictConfig) -> None:
    """What the schema cannot say: the portions must be set, and a pruning merge needs its density.

    (The schema, :class:`delia.baselines.schema.Baseline`, already bounds ``portions`` >= 2, names the
    combinations and bounds ``density`` in (0, 1].)"""
    if cfg.baseline.portions is None:
        raise DeliaError(
            "baseline=disperse_merge needs baseline.portions (an integer >= 2, one adapter each)"
        )
    if cfg.baseline.combination is None:
        raise DeliaError(
            f"baseline=disperse_merge needs baseline.combination: use {', '.join(MERGE_COMBINATIONS)}"
        )
    if cfg.baseline.combination in PRUNING and cfg.baseline.get("density") is None:
        raise DeliaError(
            f"baseline.density must be set in (0, 1] for baseline.combination={cfg.baseline.combination}"
        )


def check_portion_steps(cfg: DictConfig, steps: int) -> None:
    """With the steps fixed (compute protocol), every portion needs at least one."""
    if steps < int(cfg.baseline.portions):
        raise DeliaError(
            f"trainer.max_steps={steps} < baseline.portions={cfg.baseline.portions}: every portion needs a step"
        )


def portions(records: list[dict[str, Any]], k: int, seed: int) -> list[list[dict[str, Any]]]:
    """Split the instruction data into ``k`` disjoint portions of near-equal size (seeded shuffle)."""
    if k > len(records):
        raise DeliaError(f"baseline.portions={k} exceeds the {len(records)} training examples; lower it")
    order = list(range(len(records)))
    random.Random(f"{seed}/portions").shuffle(order)
    return [[records[i] for i in order[j::k]] for j in range(k)]


def portion_steps(max_steps: int, k: int) -> list[int]:
    """The optimizer steps of each portion: ``max_steps`` split as evenly as possible (same total compute)."""
    return [max_steps // k + (1 if j < max_steps % k else 0) for j in range(k)]


def merge_adapters(peft_model: Any, names: list[str], cfg: DictConfig, merged: str = "default") -> None:
    """Merge the portion adapters into one adapter called ``merged``, the only one left, and activate it.

    LoRA weights go through peft's ``add_weighted_adapter`` (``baseline.combination``: linear by
    default, TIES/DARE selectable). peft does not merge trainable-token rows, so the new tokens' rows of
    the merged adapter are set here to the weighted average of the portions' rows. The portions are
    deleted, so that saving writes the merged adapter alone, under peft's default name.
    """
    weights = [1.0 / len(names)] * len(names)
    extra = {"density": float(cfg.density)} if cfg.get("density") is not None else {}
    staging = f"{merged}__merging"
    peft_model.add_weighted_adapter(names, weights, staging, combination_type=str(cfg.combination), **extra)
    _average_token_rows(peft_model, names, weights, staging)
    _keep_only(peft_model, staging)
    # rename: a one-adapter linear "merge" with weight 1 is an exact copy
    peft_model.add_weighted_adapter([staging], [1.0], merged, combination_type="linear")
    _average_token_rows(peft_model, [staging], [1.0], merged)
    _keep_only(peft_model, merged)


def _keep_only(peft_model: Any, name: str) -> None:
    peft_model.set_adapter(name)
    for other in [n for n in peft_model.peft_config if n != name]:
        peft_model.delete_adapter(other)


def _average_token_rows(peft_model: Any, names: list[str], weights: list[float], merged: str) -> None:
    for module in peft_model.modules():
        deltas = getattr(module, "trainable_tokens_delta", None)
        if deltas is None or merged not in deltas:
            continue
        with torch.no_grad():
            deltas[merged].copy_(sum(w * deltas[n] for n, w in zip(names, weights, strict=True)))


def save_portion(peft_model: Any, name: str, folder: Path) -> None:
    """A finished portion's adapter weights (LoRA + new-token rows), written atomically."""
    from peft import get_peft_model_state_dict

    # the resized embedding matrix is frozen and rebuilt on load: not saved (as in model.save_adapter)
    state = get_peft_model_state_dict(peft_model, adapter_name=name, save_embedding_layers=False)
    with atomic_path(folder / PORTION_FILE) as tmp:
        save_file(
            {k: v.detach().clone().contiguous() for k, v in state.items()}, str(tmp)
        )  # tied rows: copies


def load_portion(peft_model: Any, name: str, folder: Path) -> bool:
    """Load a portion finished by an earlier (killed) attempt of this run; False when there is none."""
    from peft import set_peft_model_state_dict

    path = folder / PORTION_FILE
    if not path.is_file():
        return False
    set_peft_model_state_dict(peft_model, load_file(str(path)), adapter_name=name)
    return True


def disperse_then_merge(
    cfg: DictConfig,
    peft_model: Any,
    splits: Splits,
    loggers: list[Any],
    run_dir: Path,
    fit: Fit,
    length: RunLength,
) -> tuple[L.Trainer | None, int | None]:
    """Disperse-Then-Merge: one adapter per portion of the instruction data, then merged into one.

    Each portion trains its own adapter: ``task_epochs`` passes over its portion (the exposure protocol,
    so every downstream example is seen as often as under the other methods), or its share of the fixed
    steps (the compute protocol). A finished portion's adapter is
    saved under ``<run dir>/portions/<j>/`` and reloaded when the run is resumed, so a killed run redoes
    at most the portion it was in (which resumes from that portion's own ``last.ckpt``). Returns the
    last trainer (its per-source counts summed over the portions) and the step a preemption stopped at.
    """
    k = int(cfg.baseline.portions)
    parts = portions(splits["train"], k, cfg.seed)
    names = ["default", *[f"portion{j}" for j in range(1, k)]]
    config = peft_model.peft_config["default"]
    trainer, seen = None, dict.fromkeys(SEEN_KEYS, 0)
    steps = _steps_per_portion(parts, length)
    for j, (name, part) in enumerate(zip(names, parts, strict=True)):
        if name not in peft_model.peft_config:
            peft_model.add_adapter(name, copy.deepcopy(config))
        peft_model.set_adapter(name)
        folder = run_dir / "portions" / str(j)
        if load_portion(peft_model, name, folder):
            log.info("disperse_merge: portion %d reloaded from %s", j, folder)
            continue
        if j:
            keep_logged_rows(loggers)  # each portion counts its steps from 0 again: keep every row
        last = folder / "checkpoints" / "last.ckpt"
        resume = str(last) if cfg.resume and last.is_file() else None
        # the instruction data alone: Disperse-Then-Merge mixes in no diverse data
        trainer, preempted = fit(
            {**splits, "train": part}, steps[j], last.parent, resume, length.task_epochs, []
        )
        if preempted is not None:
            return trainer, preempted
        for key in SEEN_KEYS:
            seen[key] += int(trainer.callback_metrics.get(key, 0))
        save_portion(peft_model, name, folder)
    merge_adapters(peft_model, names, cfg.baseline)
    if trainer is not None:  # the examples of every portion trained in this process
        trainer.callback_metrics.update({k: torch.tensor(float(v)) for k, v in seen.items()})
    return trainer, None


def _steps_per_portion(parts: list[list[dict[str, Any]]], length: RunLength) -> list[int]:
    if length.task_epochs is None:
        return portion_steps(length.steps, len(parts))
    return [steps_for(length.task_epochs * len(part), length.global_batch) for part in parts]


# registered in delia.baselines.OWN_TRAINING; each portion keeps its own checkpoints (see above)
TRAINING = OwnTraining(disperse_then_merge, check_disperse, check_portion_steps, own_checkpoints=True)
