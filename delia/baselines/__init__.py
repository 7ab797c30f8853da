"""The paper's baselines and DELIA's ablations (conf/baseline/, conf/ablation/), each one config choice.

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
  translation task (built in :mod:`delia.dataset.translation`); no training unless ``baseline.train=true``;
- ``disperse_merge`` (Fu et al. 2024): the instruction data split into K portions, one LoRA adapter
  trained per portion, the adapters merged with peft (:func:`portions`, :func:`merge_adapters`). It trains
  differently, so it registers its own training in :data:`OWN_TRAINING` (:mod:`delia.baselines.training`);
  the recipe calls what the registry gives it.

``ablation=no_task_diversification|no_diverse_data`` applies on top of ``baseline=delia`` only.
:func:`check_combination` refuses what makes no sense before anything heavy starts.
"""

from __future__ import annotations

from typing import get_args

from omegaconf import DictConfig

from delia.baselines import disperse_merge
from delia.baselines.ctg import with_prior_description
from delia.baselines.disperse_merge import (
    PORTION_FILE,
    load_portion,
    merge_adapters,
    portion_steps,
    portions,
    save_portion,
)
from delia.baselines.schema import AblationName, BaselineName
from delia.baselines.training import Fit, OwnTraining
from delia.dataset import build_splits, prior_description
from delia.dataset.wordings import check_rows
from delia.infra.errors import DeliaError
from delia.infra.types import Splits

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "OWN_TRAINING",
    "PORTION_FILE",
    "Fit",
    "OwnTraining",
    "check_combination",
    "load_portion",
    "merge_adapters",
    "own_training",
    "portion_steps",
    "portions",
    "prompted_task",
    "save_portion",
    "with_prior_description",
]
BASELINES = get_args(BaselineName)
ABLATIONS = get_args(AblationName)
TOKEN_BASELINES = ("random_token", "mean_embedding", "fact_based")
# the baselines that do not train through the recipe's one fit: baseline.name -> their own training
OWN_TRAINING: dict[str, OwnTraining] = {"disperse_merge": disperse_merge.TRAINING}


def own_training(cfg: DictConfig) -> OwnTraining | None:
    """The baseline's own training (None: the recipe's one fit trains it)."""
    return OWN_TRAINING.get(str(cfg.baseline.name))


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
    if name in OWN_TRAINING:
        OWN_TRAINING[name].check(cfg)
    # chat data: a pool or a fixed wording needs the instruction found, and an ablation that would train
    # what DELIA trains is refused (reads the rows only when the run rewrites instructions)
    check_rows(cfg)


def prompted_task(cfg: DictConfig) -> Splits:
    """The downstream splits as the baseline prompts them.

    ``ctg`` puts the prior description in front of every prompt; ``dipmt`` adds dictionary hints.
    """
    splits = build_splits(cfg.dataset)
    if cfg.baseline.get("dictionary_hints"):
        from delia.baselines.dipmt import with_dictionary_hints

        splits = with_dictionary_hints(splits, cfg.dataset)
    if cfg.baseline.get("prior_description_in_prompt"):
        description = prior_description(cfg.dataset) or ""
        splits = {name: with_prior_description(rows, description) for name, rows in splits.items()}
    return splits
