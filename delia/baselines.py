"""The paper's baselines and DELIA's ablations (DESIGN.md section 2), each chosen by config only.

``baseline=<name>`` picks ``conf/baseline/<name>.yaml``. Most baselines are settings of the one recipe:

| baseline         | what changes against ``delia``                                              |
|------------------|-----------------------------------------------------------------------------|
| ``common_it``    | no diverse data, one fixed instruction wording                              |
| ``random_token`` | ``common_it`` + new row drawn N(0, sigma) and never trained (a floor)       |
| ``mean_embedding`` | ``common_it`` + new row = mean of all embedding rows                      |
| ``fact_based``   | ``common_it`` + new row = mean embedding of the prior description's tokens  |
| ``dmt``          | DELIA's data under ``schedule=two_stage`` (Dong et al. 2024)                |

Three need code of their own, which lives here:

- ``ctg`` (controlled text generation): no training; the prior description is put in front of every
  prompt at inference (:func:`with_prior_description`);
- ``dipmt`` (Ghazvininejad et al. 2023): dictionary hints for rare source words in every prompt of the
  translation task (built in :mod:`delia.data.translation`); no training unless ``baseline.train=true``;
- ``disperse_merge`` (Fu et al. 2024): the instruction data split into K portions, one LoRA adapter
  trained per portion, the adapters merged with peft (:func:`portions`, :func:`merge_adapters`).

``ablation=no_task_diversification|no_diverse_data`` applies on top of ``baseline=delia`` only.
:func:`check_combination` refuses what makes no sense before anything heavy starts.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file

from delia.errors import DeliaError

BASELINES = (
    "delia",
    "common_it",
    "random_token",
    "mean_embedding",
    "fact_based",
    "ctg",
    "dmt",
    "dipmt",
    "disperse_merge",
)
ABLATIONS = ("none", "no_task_diversification", "no_diverse_data")
TOKEN_BASELINES = ("random_token", "mean_embedding", "fact_based")
# peft's add_weighted_adapter combinations that keep the rank of equal-rank adapters, plus the exact ones
PORTION_FILE = "portion_adapter.safetensors"
MERGE_COMBINATIONS = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")


def check_combination(cfg: DictConfig) -> None:
    """Refuse a baseline/ablation/dataset combination that cannot mean anything, naming the fix."""
    name, ablation, kind = cfg.baseline.name, cfg.ablation.name, cfg.dataset.kind
    if name not in BASELINES:
        raise DeliaError(f"baseline.name={name!r} is unknown: use one of {', '.join(BASELINES)}")
    if ablation not in ABLATIONS:
        raise DeliaError(f"ablation.name={ablation!r} is unknown: use one of {', '.join(ABLATIONS)}")
    if ablation != "none" and name != "delia":
        raise DeliaError(
            f"ablation={ablation} is an ablation of DELIA and does not apply to baseline={name}; "
            f"use baseline=delia or ablation=none"
        )
    if name == "dipmt" and kind != "translation":
        raise DeliaError(
            f"baseline=dipmt is dictionary-based prompting for translation; dataset={cfg.dataset.name} is not a "
            f"translation task: use dataset=wmt21_is_en or dataset=wmt21_en_is"
        )
    if name == "ctg" and kind != "sep_format":
        raise DeliaError(
            f"baseline=ctg puts the task's prior description in the prompt; dataset={cfg.dataset.name} has none: "
            f"use dataset=sep_format"
        )
    if name in TOKEN_BASELINES and not cfg.dataset.get("special_token"):
        raise DeliaError(
            f"baseline={name} initialises a new token, but dataset={cfg.dataset.name} adds none: "
            f"set dataset.special_token or pick another baseline"
        )
    if name == "dmt" and cfg.schedule.name != "two_stage":
        raise DeliaError(f"baseline=dmt needs schedule=two_stage (got schedule={cfg.schedule.name})")
    if name == "disperse_merge":
        _check_disperse(cfg)


def _check_disperse(cfg: DictConfig) -> None:
    k = cfg.baseline.portions
    if not isinstance(k, int) or k < 2:
        raise DeliaError(f"baseline.portions={k} must be an integer >= 2 (one adapter per portion)")
    if int(cfg.trainer.max_steps) < k:
        raise DeliaError(
            f"trainer.max_steps={cfg.trainer.max_steps} < baseline.portions={k}: every portion needs a step"
        )
    if cfg.baseline.combination not in MERGE_COMBINATIONS:
        raise DeliaError(
            f"baseline.combination={cfg.baseline.combination!r} is unknown: use {', '.join(MERGE_COMBINATIONS)}"
        )
    if cfg.baseline.combination in ("ties", "dare_linear", "dare_ties", "magnitude_prune"):
        density = cfg.baseline.get("density")
        if density is None or not 0 < float(density) <= 1:
            raise DeliaError(f"baseline.density={density} must be in (0, 1] for {cfg.baseline.combination}")


# ---------------------------------------------------------------------------------------------
# ctg: the prior description in the prompt, no training
# ---------------------------------------------------------------------------------------------


def with_prior_description(records: list[dict[str, Any]], description: str) -> list[dict[str, Any]]:
    """The records with the prior description put before the first user turn's text.

    It goes into the user turn (not a system turn) because some chat templates (Gemma's) have no
    system role.
    """
    out = []
    for record in records:
        messages = [dict(m) for m in record["messages"]]
        first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first_user]["content"] = f"{description}\n\n{messages[first_user]['content']}"
        out.append({**record, "messages": messages})
    return out


# ---------------------------------------------------------------------------------------------
# disperse_merge: K portions, K adapters, one merged adapter
# ---------------------------------------------------------------------------------------------


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

    # the resized embedding matrix is frozen and rebuilt on load: not saved (as in models.save_adapter)
    state = get_peft_model_state_dict(peft_model, adapter_name=name, save_embedding_layers=False)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{PORTION_FILE}.tmp-{os.getpid()}"
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(tmp))  # tied rows: copies
    os.replace(tmp, folder / PORTION_FILE)


def load_portion(peft_model: Any, name: str, folder: Path) -> bool:
    """Load a portion finished by an earlier (killed) attempt of this run; False when there is none."""
    from peft import set_peft_model_state_dict

    path = folder / PORTION_FILE
    if not path.is_file():
        return False
    set_peft_model_state_dict(peft_model, load_file(str(path)), adapter_name=name)
    return True
